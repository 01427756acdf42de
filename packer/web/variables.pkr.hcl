# Variables the collection passes to every recipe (the recipe contract).
variable "parent_image" {
  type        = string
  description = "Parent image pinned by digest (registry/name@sha256:...), resolved by immutable.infra.image_bake; empty for the AMI source, which starts from a source AMI."
  default     = ""
  validation {
    # Packer 1.6 has no regexall(); split() works on every version.
    condition     = var.parent_image == "" || (length(split("@sha256:", var.parent_image)) == 2 && length(element(split("@sha256:", var.parent_image), 1)) == 64)
    error_message = "The parent_image must be pinned by digest (name@sha256:<64 hex>)."
  }
}

variable "image_labels" {
  type        = map(string)
  description = "OCI labels (version, created, revision, base digest, recipe, fingerprint) the image must carry."
  default     = {}
}

variable "image_version" {
  type        = string
  description = "The image version being baked."
  default     = "unversioned"
}

variable "build_name" {
  type        = string
  description = "Unique name of the temporary build container."
  default     = "immutable-bake-web"
}

# Variables of this recipe.
variable "web_message" {
  type        = string
  description = "Message the web service reports; two versions differ visibly by it."
  default     = "hello from immutable.infra"
}

variable "web_port" {
  type        = number
  description = "Port the web service listens on."
  default     = 8080
  validation {
    condition     = var.web_port > 0 && var.web_port < 65536
    error_message = "The web_port must be between 1 and 65535."
  }
}

variable "web_healthy" {
  type        = bool
  description = "When false the image's /healthz answers 500 (an image that must never reach traffic)."
  default     = true
}

variable "web_fail_requests" {
  type        = number
  description = "Share (0-100 percent) of /version requests answered 500 while /healthz stays healthy (for testing the verify window)."
  default     = 0
  validation {
    condition     = var.web_fail_requests >= 0 && var.web_fail_requests <= 100
    error_message = "The web_fail_requests must be between 0 and 100."
  }
}

# Variables the collection passes to a recipe's VM (qemu) sources: the parent's
# VM image from the local cache, how to run qemu, and Packer's SSH key pair
# (its public half goes to the guest through fw_cfg opt/immutable/authorized_keys).
variable "parent_disk" {
  type        = string
  description = "The parent VM image's qcow2 disk in the local cache (read only: the bake works on a copy)."
  default     = "/nonexistent/parent.qcow2"
}

variable "parent_kernel" {
  type        = string
  description = "The parent VM image's kernel (booted directly with -kernel)."
  default     = "/nonexistent/vmlinuz"
}

variable "parent_initrd" {
  type        = string
  description = "The parent VM image's initrd."
  default     = "/nonexistent/initrd.img"
}

variable "parent_kernel_args" {
  type        = string
  description = "The parent VM image's kernel command line (its infra.immutable.kernel-args label)."
  default     = "root=/dev/vda rw console=ttyS0"
}

variable "accelerator" {
  type        = string
  description = "qemu accelerator: kvm where KVM runs guests, else tcg (detected by immutable.infra)."
  default     = "tcg"
}

variable "ssh_private_key_file" {
  type        = string
  description = "Private key Packer and the ansible provisioner log in with as root (passed by immutable.infra)."
  default     = ""
}

variable "ssh_public_key_file" {
  type        = string
  description = "Its public half, given to the guest through fw_cfg."
  default     = "/dev/null"
}

variable "vm_output_dir" {
  type        = string
  description = "Directory (must not exist) where the qemu builder writes disk.qcow2."
  default     = "output-vm"
}

variable "vm_serial_log" {
  type        = string
  description = "File that receives the VM's serial console during the bake."
  default     = "/dev/null"
}

variable "vm_manifest" {
  type        = string
  description = "Where the VM source's manifest post-processor writes; its custom_data become the VM image's labels."
  default     = "vm-manifest.json"
}

# Variables the collection passes to a recipe's AMI (amazon-ebs) sources: where
# to build and copy, the endpoint (empty on AWS; a moto server in the tests),
# the AMI's name and the tags it carries from the start (version, fingerprint,
# recipe, bake id, catalog repository, state=unpublished until the catalog
# version is pushed). Credentials come from the environment, never from here.
variable "aws_region" {
  type        = string
  description = "Region the AMI is built in (the first of image_bake's ami_regions)."
  default     = "us-east-1"
}

variable "aws_ami_regions" {
  type        = list(string)
  description = "Other regions the AMI is copied to (Packer's ami_regions)."
  default     = []
}

variable "aws_endpoint_ec2" {
  type        = string
  description = "EC2 endpoint other than AWS's (a moto server for offline bakes); empty on AWS."
  default     = ""
}

variable "aws_ami_name" {
  type        = string
  description = "Name of the AMI (unique per bake: <name>-v<version>-<bake id>)."
  default     = "immutable-web-{{timestamp}}"
}

variable "aws_ami_tags" {
  type        = map(string)
  description = "Tags of the AMI and its snapshots (image_bake passes the version's identity)."
  default     = {}
}

# Variables of this recipe's AMI source (inputs of the fingerprint: give them in
# a var file or image_bake's variables).
variable "aws_source_ami" {
  type        = string
  description = "Source AMI id; empty: the newest AMI matching aws_source_ami_name owned by aws_source_ami_owners."
  default     = ""
}

variable "aws_source_ami_name" {
  type        = string
  description = "Name filter of the source AMI when aws_source_ami is empty (Debian 12's official AMIs)."
  default     = "debian-12-amd64-*"
}

variable "aws_source_ami_owners" {
  type        = list(string)
  description = "Owners of the source AMI when aws_source_ami is empty (136693071363: Debian)."
  default     = ["136693071363"]
}

variable "aws_instance_type" {
  type        = string
  description = "Instance type of the temporary build instance."
  default     = "t3.micro"
}

variable "aws_subnet_id" {
  type        = string
  description = "Subnet of the build instance (empty: the default VPC's); Packer must reach it over SSH."
  default     = ""
}

variable "aws_iam_instance_profile" {
  type        = string
  description = "Instance profile of the build instance (empty: none)."
  default     = ""
}

variable "aws_ssh_username" {
  type        = string
  description = "User Packer and the ansible provisioner log in as (admin on Debian's AMIs)."
  default     = "admin"
}
