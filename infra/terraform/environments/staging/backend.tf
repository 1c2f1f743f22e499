# State of the staging environment: its own S3 bucket (versioned, encrypted) and DynamoDB lock
# table, created once per account before the first terraform init (see docs/operators.md, "Infrastructure").
terraform {
  backend "s3" {
    bucket         = "muejam-terraform-state-staging"
    key            = "edge/staging/terraform.tfstate"
    region         = "us-east-1"
    dynamodb_table = "muejam-terraform-locks-staging"
    encrypt        = true
  }
}
