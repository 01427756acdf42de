# For Packer 1.7 and later only: copy this file into a recipe directory and
# run `packer init .` there once. Packer 1.6 (Debian 12's) rejects this block,
# so it is kept out of the recipes the collection ships.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    docker = {
      version = ">= 1.0.8"
      source  = "github.com/hashicorp/docker"
    }
    ansible = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/ansible"
    }
    qemu = {
      version = ">= 1.0.9"
      source  = "github.com/hashicorp/qemu"
    }
    amazon = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
