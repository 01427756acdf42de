# An outside recipe: a stdlib Python service on port 9000, declared with EXPOSE.
source "docker" "container" {
  image       = var.parent_image
  pull        = false
  commit      = true
  run_command = ["-d", "-i", "-t", "--name", var.build_name, "{{.Image}}", "/bin/sh"]
  changes = concat(
    [for k, v in var.image_labels : "LABEL ${k}=${jsonencode(v)}"],
    [
      "EXPOSE 9000",
      "STOPSIGNAL SIGTERM",
      "ENTRYPOINT [\"/usr/bin/python3\", \"/usr/local/lib/pyapi.py\"]",
      "CMD []",
    ]
  )
}
