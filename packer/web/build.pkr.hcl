build {
  name    = "web"
  sources = ["source.docker.container", "source.qemu.vm", "source.amazon-ebs.ami"]

  # The AMI without provisioning (communicator "none"): image_bake's
  # ami_communicator=none, for endpoints whose instances cannot be reached
  # (a moto server). On AWS the "ami" source runs the roles over SSH.
  source "source.amazon-ebs.ami" {
    name         = "ami-offline"
    communicator = "none"
  }

  provisioner "ansible" {
    only          = ["docker.container"]
    playbook_file = "${path.root}/playbook.yml"
    use_proxy     = false
    extra_arguments = [
      "-e", "ansible_connection=containers.podman.podman",
      "-e", "ansible_host=${var.build_name}",
      "-e", "ansible_python_interpreter=/usr/bin/python3",
      "-e", jsonencode({ image_version = var.image_version, web_message = var.web_message, web_port = var.web_port, web_healthy = var.web_healthy, web_fail_requests = var.web_fail_requests }),
    ]
  }

  # The VM: plain SSH to the forwarded port, as root with the bake's key.
  provisioner "ansible" {
    only             = ["qemu.vm"]
    playbook_file    = "${path.root}/playbook.yml"
    use_proxy        = false
    user             = "root"
    ansible_env_vars = ["ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_PIPELINING=True", "ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null"]
    extra_arguments = [
      "-e", "ansible_python_interpreter=/usr/bin/python3",
      "-e", "ansible_ssh_private_key_file=${var.ssh_private_key_file}",
      "-e", jsonencode({ image_version = var.image_version, web_message = var.web_message, web_port = var.web_port, web_healthy = var.web_healthy, web_fail_requests = var.web_fail_requests }),
    ]
  }

  # The AMI: Packer's SSH to the build instance (its temporary key pair), as
  # Debian's AMI user, with sudo.
  provisioner "ansible" {
    only             = ["amazon-ebs.ami"]
    playbook_file    = "${path.root}/playbook.yml"
    use_proxy        = false
    user             = var.aws_ssh_username
    ansible_env_vars = ["ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_PIPELINING=True"]
    extra_arguments = [
      "--become",
      "-e", "ansible_python_interpreter=/usr/bin/python3",
      "-e", jsonencode({ image_version = var.image_version, web_message = var.web_message, web_port = var.web_port, web_healthy = var.web_healthy, web_fail_requests = var.web_fail_requests }),
    ]
  }

  # Labels of the VM image (a qcow2 has none of its own): immutable.infra reads
  # this manifest's custom_data and labels the packaged image with it.
  post-processor "manifest" {
    only        = ["qemu.vm"]
    output      = var.vm_manifest
    custom_data = { "infra.immutable.port" = "${var.web_port}" }
  }
}
