#!/usr/bin/env python3
"""Drive the moto S3 server the tests start: set it up, look into it.

Usage: moto_helper.py ENDPOINT COMMAND [ARGS...]; prints JSON.
  setup BUCKET                       create the bucket, an IAM user with an
                                     s3:* policy and its access key (moto
                                     checks signatures from then on)
  head KEY_ID SECRET BUCKET KEY      the object's size and x-amz-meta-sha256
  sha256 KEY_ID SECRET BUCKET KEY    SHA-256 of the object's content
  put KEY_ID SECRET BUCKET KEY SHA   plant an object with that metadata
  uploads KEY_ID SECRET BUCKET       multipart uploads in progress
  abort KEY_ID SECRET BUCKET KEY ID  abort a multipart upload
"""
import hashlib
import json
import sys

import boto3
import botocore


def client(endpoint, service, key="test", secret="test"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def main():
    endpoint, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if cmd == "setup":
        (bucket,) = args
        # Exactly INITIAL_NO_AUTH_ACTION_COUNT (4) unauthenticated calls.
        client(endpoint, "s3").create_bucket(Bucket=bucket)
        iam = client(endpoint, "iam")
        iam.create_user(UserName="lab-host")
        key = iam.create_access_key(UserName="lab-host")["AccessKey"]
        iam.put_user_policy(
            UserName="lab-host",
            PolicyName="s3-all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        print(json.dumps({"key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
        return
    key_id, secret = args[0], args[1]
    s3 = client(endpoint, "s3", key_id, secret)
    if cmd == "head":
        bucket, key = args[2:4]
        try:
            h = s3.head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as e:
            print(json.dumps({"error": e.response["Error"]["Code"]}))
            return
        print(json.dumps({"size": h["ContentLength"], "sha256": h["Metadata"].get("sha256")}))
    elif cmd == "sha256":
        bucket, key = args[2:4]
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        h = hashlib.sha256()
        for chunk in iter(lambda: body.read(1 << 20), b""):
            h.update(chunk)
        print(json.dumps({"sha256": h.hexdigest()}))
    elif cmd == "put":
        bucket, key, sha = args[2:5]
        s3.put_object(Bucket=bucket, Key=key, Body=b"another recording", Metadata={"sha256": sha})
        print(json.dumps({"ok": True}))
    elif cmd == "uploads":
        (bucket,) = args[2:3]
        r = s3.list_multipart_uploads(Bucket=bucket)
        print(json.dumps([{"key": u["Key"], "id": u["UploadId"]} for u in r.get("Uploads", [])]))
    elif cmd == "abort":
        bucket, key, upload_id = args[2:5]
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        print(json.dumps({"ok": True}))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
