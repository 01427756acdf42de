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
