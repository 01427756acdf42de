# A container image; Packer's docker builder runs on podman (immutable.infra
# puts a `docker` that is podman first on PATH for the bake).
source "docker" "container" {
  image  = var.parent_image
  pull   = false
  commit = true
  # A name of our own so the ansible provisioner can reach the container
  # through the containers.podman connection instead of Packer's SSH proxy.
  run_command = ["-d", "-i", "-t", "--name", var.build_name, "{{.Image}}", "/bin/sh"]
  changes = concat(
    [for k, v in var.image_labels : "LABEL ${k}=${jsonencode(v)}"],
    [
      "ENV WEB_PORT=${var.web_port}",
      "EXPOSE ${var.web_port}",
      "USER web",
      "STOPSIGNAL SIGTERM",
      "ENTRYPOINT [\"/usr/bin/python3\", \"/opt/web/web.py\"]",
      "CMD []",
    ]
  )
}

# A VM disk (qcow2) on the parent's cached VM image (immutable.infra fetches it
# and passes its disk, kernel, initrd and kernel arguments). The parent's guest
# contract installs Packer's public key for root from fw_cfg; qemu's user
# network forwards SSH to 127.0.0.1 only. The collection packages the disk
# with the parent's kernel and initrd and labels it.
source "qemu" "vm" {
  disk_image       = true
  iso_url          = var.parent_disk
  iso_checksum     = "none"
  use_backing_file = false
  skip_resize_disk = true
  format           = "qcow2"
  output_directory = var.vm_output_dir
  vm_name          = "disk.qcow2"
  accelerator      = var.accelerator
  headless         = true
  memory           = 1024
  cpus             = 2
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  boot_wait        = "-1s"
  qemuargs = [
    ["-kernel", var.parent_kernel],
    ["-initrd", var.parent_initrd],
    ["-append", var.parent_kernel_args],
    ["-netdev", "user,id=user.0,restrict=on,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-device", "virtio-net-pci,netdev=user.0"],
    ["-device", "virtio-rng-pci"],
    ["-fw_cfg", "name=opt/immutable/authorized_keys,file=${var.ssh_public_key_file}"],
    ["-serial", "file:${var.vm_serial_log}"],
  ]
  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key_file == "" ? null : var.ssh_private_key_file
  ssh_timeout          = "10m"
  host_port_min        = 2222
  host_port_max        = 4444
  shutdown_command     = "systemctl poweroff"
}

# An AMI. On AWS: a temporary instance from the source AMI, provisioned over
# SSH by the same roles (web, seal), snapshotted, copied to aws_ami_regions and
# tagged. The build block adds a variant "ami-offline" with communicator "none"
# (nothing provisioned): what image_bake runs with ami_communicator=none, e.g.
# against a moto server, whose instances cannot be reached.
source "amazon-ebs" "ami" {
  region                  = var.aws_region
  ami_regions             = var.aws_ami_regions
  ami_name                = var.aws_ami_name
  ami_description         = "immutable.infra web image ${var.image_version}"
  instance_type           = var.aws_instance_type
  source_ami              = var.aws_source_ami == "" ? null : var.aws_source_ami
  subnet_id               = var.aws_subnet_id == "" ? null : var.aws_subnet_id
  iam_instance_profile    = var.aws_iam_instance_profile == "" ? null : var.aws_iam_instance_profile
  ssh_username            = var.aws_ssh_username
  ssh_timeout             = "10m"
  custom_endpoint_ec2     = var.aws_endpoint_ec2 == "" ? null : var.aws_endpoint_ec2
  skip_region_validation  = var.aws_endpoint_ec2 != ""
  skip_metadata_api_check = var.aws_endpoint_ec2 != ""
  tags                    = var.aws_ami_tags
  snapshot_tags           = var.aws_ami_tags
  run_tags                = { "Name" = "immutable-bake-${var.build_name}" }

  dynamic "source_ami_filter" {
    for_each = var.aws_source_ami == "" ? [var.aws_source_ami_name] : []
    content {
      filters     = { name = source_ami_filter.value, virtualization-type = "hvm", root-device-type = "ebs" }
      owners      = var.aws_source_ami_owners
      most_recent = true
    }
  }
}
