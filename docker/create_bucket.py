"""Create the artifact bucket if it does not exist, then exit 0 (compose's one-shot job).

Idempotent, so `docker compose up` can run it every time. Waits (bounded) for the S3 endpoint.
Environment: S3_ENDPOINT_URL, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
"""

import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ATTEMPTS = 30


def main() -> int:
    endpoint = os.environ["S3_ENDPOINT_URL"]
    bucket = os.environ["S3_BUCKET"]
    s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            s3.create_bucket(Bucket=bucket)
            print(f"created bucket {bucket} at {endpoint}")
            return 0
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                print(f"bucket {bucket} already exists at {endpoint}")
                return 0
            problem = f"S3 answered {code}"
        except BotoCoreError as exc:
            problem = type(exc).__name__
        print(f"waiting for {endpoint} ({problem}), attempt {attempt}/{ATTEMPTS}", file=sys.stderr)
        time.sleep(2)
    print(f"error: cannot create bucket {bucket} at {endpoint}: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
