# State of the production environment: its own S3 bucket (versioned, encrypted) and DynamoDB lock
# table, created once per account before the first terraform init (see docs/operators.md, "Infrastructure").
terraform {
  backend "s3" {
    bucket         = "muejam-terraform-state-production"
    key            = "edge/production/terraform.tfstate"
    region         = "us-east-1"
    dynamodb_table = "muejam-terraform-locks-production"
    encrypt        = true
  }
}
