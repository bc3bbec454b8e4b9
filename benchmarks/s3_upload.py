"""S3 upload time by part size, against moto on 127.0.0.1.

    python benchmarks/s3_upload.py [--sizes-mb 100,1000] [--repeats 3] [--in-process]

Uploads a file of each size (MB, 10^6 bytes) three ways:

* ``fixed-64``: tunefleet's staging (``tunefleet_sagemaker._staging.stage``) with
  ``upload_part_mb=64``, the old default: 64 MiB parts, 8 at a time;
* ``boto3``: ``upload_file`` on the same client with boto3's ``TransferConfig()`` as it
  comes (8 MiB threshold and parts, 10 at a time), the same metadata and content type;
* ``auto``: tunefleet's staging with ``upload_part_mb`` unset: the part size chosen from the
  file's size (``_staging.upload_parts``), 8 at a time.

The three are interleaved (each repetition runs each once, the order rotated between
repetitions) and the median of the repetitions is reported. The staging calls include what
staging always sends besides the upload (a HeadObject before and after; the bucket's region
is looked up once, before timing). Each object is deleted after it is timed, so moto's
memory holds one at a time. moto runs in its own process (``python -m moto.server``) so
that serving does not share the benchmark's interpreter lock; ``--in-process`` runs it as
the tests do (``moto.server.ThreadedMotoServer`` in a thread). Prints a markdown table and
writes .bench/s3_upload.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
REGION = "eu-west-1"
BUCKET = "bench-uploads"
MB = 1000 * 1000
MiB = 1 << 20
VARIANTS = ("fixed-64", "boto3", "auto")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto(in_process: bool) -> Iterator[str]:
    """moto on 127.0.0.1, as long as the block runs; yields its URL."""
    if in_process:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()
        return
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("moto.server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def make_file(size: int) -> Path:
    """A file of ``size`` bytes under .bench/ (made once): a random MiB repeated."""
    path = WORK / f"s3_upload-{size // MB}MB.bin"
    if not path.exists() or path.stat().st_size != size:
        block = os.urandom(MiB)
        with path.open("wb") as out:
            for start in range(0, size, MiB):
                out.write(block[: min(MiB, size - start)])
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    import s3transfer
    from boto3.s3.transfer import TransferConfig

    from tunefleet_sagemaker import _client, _staging
    from tunefleet_sagemaker.options import SageMakerOptions

    s3 = _client.client("s3", REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    buckets = _staging.BucketRegions()
    buckets.check(s3, BUCKET, REGION)  # once, untimed: staging looks it up once a process

    timing: dict[str, float] = {}

    def delete(key: str) -> None:
        # Stop the clock before the delete: only the upload is measured.
        timing["end"] = time.perf_counter()
        s3.delete_object(Bucket=BUCKET, Key=key)

    def options(prefix: str, part_mb: int | None) -> SageMakerOptions:
        return SageMakerOptions(
            role_arn="arn:aws:iam::123456789012:role/bench",
            bucket=BUCKET,
            prefix=prefix,
            training_image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/trainer:1",
            upload_part_mb=part_mb,
        )

    def staged(part_mb: int | None) -> Callable[[Path, str, str], None]:
        def upload(path: Path, sha256: str, prefix: str) -> None:
            chosen = options(prefix, part_mb)
            ref = _staging.stage(buckets, chosen, REGION, {}, "train", path, sha256, None)
            delete(ref.uri.removeprefix(f"s3://{BUCKET}/"))

        return upload

    def with_boto3_defaults(path: Path, sha256: str, prefix: str) -> None:
        key = f"{prefix}/datasets/{sha256}.jsonl"
        extra = {"Metadata": {"sha256": sha256}, "ContentType": "application/jsonl"}
        s3.upload_file(str(path), BUCKET, key, ExtraArgs=extra, Config=TransferConfig())
        delete(key)

    uploads: dict[str, Callable[[Path, str, str], None]] = {
        "fixed-64": staged(64),
        "boto3": with_boto3_defaults,
        "auto": staged(None),
    }
    defaults = TransferConfig()

    def parts_of(variant: str, size: int) -> tuple[int, int]:
        if variant == "boto3":
            chosen = _staging.UploadParts(
                defaults.multipart_threshold, defaults.multipart_chunksize
            )
        else:
            chosen = _staging.upload_parts(size, 64 if variant == "fixed-64" else None)
        return chosen.part_bytes, chosen.count(size)

    warm = make_file(MB)  # connections and moto's first requests, untimed
    for variant, upload in uploads.items():
        upload(warm, "0" * 64, f"warm/{variant}")

    results: dict[str, Any] = {}
    for size_mb in args.sizes_mb:
        size = size_mb * MB
        path = make_file(size)
        sha256 = f"{size_mb:064d}"  # staging takes the hash as given; the key is all it names
        seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for repeat in range(args.repeats):
            order = VARIANTS[repeat % 3 :] + VARIANTS[: repeat % 3]
            for variant in order:
                start = time.perf_counter()
                uploads[variant](path, sha256, f"bench/{variant}/{repeat}")
                seconds[variant].append(timing["end"] - start)
                print(
                    f"  {size_mb} MB {variant:8} #{repeat + 1}: {seconds[variant][-1]:.2f} s",
                    file=sys.stderr,
                )
        results[f"{size_mb} MB"] = {
            variant: {
                "part_bytes": parts_of(variant, size)[0],
                "parts": parts_of(variant, size)[1],
                "concurrency": defaults.max_concurrency
                if variant == "boto3"
                else _staging.UPLOAD_CONCURRENCY,
                "seconds": times,
                "median_s": statistics.median(times),
                "mb_per_s": size_mb / statistics.median(times),
            }
            for variant, times in seconds.items()
        }
    return {
        "results": results,
        "repeats": args.repeats,
        "server": "ThreadedMotoServer (in process)" if args.in_process else "moto.server process",
        "versions": {
            "python": platform.python_version(),
            "boto3": boto3.__version__,
            "s3transfer": s3transfer.__version__,
            "moto": _moto_version(),
        },
        "cpus": os.cpu_count(),
    }


def _moto_version() -> str:
    import moto

    return str(moto.__version__)


def table(report: dict[str, Any]) -> str:
    lines = [
        "| file | variant | part size | parts | streams | median s | MB/s | vs boto3 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, variants in report["results"].items():
        baseline = variants["boto3"]["median_s"]
        for variant, row in variants.items():
            lines.append(
                f"| {size} | {variant} | {row['part_bytes'] / MiB:g} MiB | {row['parts']} | "
                f"{row['concurrency']} | {row['median_s']:.2f} | {row['mb_per_s']:.0f} | "
                f"{row['median_s'] / baseline:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes-mb", default="100,1000", type=lambda text: [int(s) for s in text.split(",")]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    with moto(args.in_process) as url:
        for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
            os.environ.pop(variable, None)
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        )
        report = run(args)
    print(table(report))
    out = WORK / "s3_upload.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
