# The recipe contract (see the collection README): immutable.infra passes these.
variable "parent_image" {
  type = string
}

variable "image_labels" {
  type    = map(string)
  default = {}
}

variable "image_version" {
  type    = string
  default = "unversioned"
}

variable "build_name" {
  type    = string
  default = "immutable-bake-pyapi"
}
