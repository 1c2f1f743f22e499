# State of the dev environment: its own S3 bucket (versioned, encrypted) and DynamoDB lock
# table, created once per account before the first terraform init (see docs/operators.md, "Infrastructure").
terraform {
  backend "s3" {
    bucket         = "muejam-terraform-state-dev"
    key            = "edge/dev/terraform.tfstate"
    region         = "us-east-1"
    dynamodb_table = "muejam-terraform-locks-dev"
    encrypt        = true
  }
}
