"""What has to exist in a cloud account before the first `pulumi login` (see `bootstrap.aws`)."""
