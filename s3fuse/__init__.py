"""s3fuse: S3 as a POSIX filesystem, configured the Alluxio way."""
