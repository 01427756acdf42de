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
