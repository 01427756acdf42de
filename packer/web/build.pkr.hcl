build {
  name    = "web"
  sources = ["source.docker.container"]

  provisioner "ansible" {
    playbook_file = "${path.root}/playbook.yml"
    use_proxy     = false
    extra_arguments = [
      "-e", "ansible_connection=containers.podman.podman",
      "-e", "ansible_host=${var.build_name}",
      "-e", "ansible_python_interpreter=/usr/bin/python3",
      "-e", jsonencode({ image_version = var.image_version, web_message = var.web_message, web_port = var.web_port, web_healthy = var.web_healthy, web_fail_requests = var.web_fail_requests }),
    ]
  }
}
