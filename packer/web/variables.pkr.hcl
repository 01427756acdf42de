# Variables the collection passes to every recipe (the recipe contract).
variable "parent_image" {
  type        = string
  description = "Parent image pinned by digest (registry/name@sha256:...), resolved by immutable.infra.image_bake."
  validation {
    # Packer 1.6 has no regexall(); split() works on every version.
    condition     = length(split("@sha256:", var.parent_image)) == 2 && length(element(split("@sha256:", var.parent_image), 1)) == 64
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
