build {
  sources = ["source.docker.container"]

  provisioner "ansible" {
    playbook_file = "${path.root}/playbook.yml"
    use_proxy     = false
    extra_arguments = [
      "-e", "ansible_connection=containers.podman.podman",
      "-e", "ansible_host=${var.build_name}",
      "-e", "ansible_python_interpreter=/usr/bin/python3",
      "-e", "image_version=${var.image_version}",
    ]
  }
}
