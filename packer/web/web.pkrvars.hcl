web_message = "hello from immutable.infra"
web_port    = 8080
