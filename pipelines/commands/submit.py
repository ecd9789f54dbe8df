"""``recrl submit``: run a recrl command on a Ray cluster as a Ray job and stream its logs.
The work is in `recrl.pipelines.jobs`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recrl.pipelines import errors

_SUBMIT_EPILOG = """\
Everything after `--` is the recrl command to run on the cluster. The checkout
(--working-dir) is uploaded without data, runs/, MLflow stores (mlruns.db, mlartifacts/),
virtualenvs, .git and caches, and the job runs `python -m recrl.pipelines.cli COMMAND` in it, so
the cluster runs this code. It is the same as the raw Ray command:

  ray job submit --address http://HEAD:8265 --working-dir . -- recrl train ...

(add --runtime-env-json '{"excludes": [".venv/", "data/", "runs/", "mlruns.db"]}' there;
`recrl submit` sets those excludes itself).

cluster address: --address, else RAY_ADDRESS, else http://127.0.0.1:8265 (the dashboard
port of `ray start --head`).

data and outputs: paths in the command are read and written ON THE CLUSTER. Use paths
every node sees: a shared filesystem (/shared/rc15), s3://bucket/rc15 or gs://bucket/rc15.
A relative path lands in the job's temporary copy of the checkout and is lost.

MLflow: MLFLOW_TRACKING_URI is forwarded to the job, a local sqlite path made absolute;
that only works when the cluster shares this disk. On a real cluster run an MLflow server
and export MLFLOW_TRACKING_URI=http://mlflow-host:5000 before submitting.

Ctrl-C stops following, not the job: `ray job stop ID --address URL` stops it.

examples:
  ray start --head                          # a one-machine cluster, dashboard on :8265
  recrl submit -- generate --out /tmp/gen --sessions 2000
  recrl submit --address http://head:8265 -- train --variant sasrec_ccql --data /shared/rc15
  recrl submit --no-wait -- tune tune_configs/negatives.yaml --set data=s3://bucket/rc15
  ray job logs --follow raysubmit_XXXX --address http://head:8265
"""


def register(commands) -> None:
    p = commands.add_parser(
        "submit",
        help="run a recrl command on a Ray cluster as a Ray job (streams its logs)",
        description="Submit `recrl COMMAND ...` to a Ray cluster through the Ray Job SDK "
        "with this checkout as the working directory, stream its logs and wait for it to "
        "end (exit status 0 when it SUCCEEDED).",
        epilog=_SUBMIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="recrl submit [-h] [--address URL] [--no-wait] [--working-dir DIR] "
        "[--timeout S] -- COMMAND ...",
    )
    p.add_argument("--address", default=None, metavar="URL",
                   help="the cluster's dashboard address (RAY_ADDRESS, else "
                        "http://127.0.0.1:8265)")  # fmt: skip
    p.add_argument("--no-wait", action="store_true",
                   help="print the job id and return once the job is submitted")  # fmt: skip
    p.add_argument("--working-dir", type=Path, default=Path("."), metavar="DIR",
                   help="the recrl checkout to upload (.)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up waiting after S seconds (the job keeps running)")  # fmt: skip
    p.add_argument("recrl_args", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the recrl command to run, e.g. -- train --data /shared/rc15")  # fmt: skip
    p.set_defaults(handler=run)


def run(args) -> int:
    from recrl.pipelines.jobs import JobFailedError, JobSubmissionError, resolve_address, submit

    recrl_args = list(args.recrl_args)
    if recrl_args[:1] == ["--"]:
        recrl_args = recrl_args[1:]
    if not recrl_args:
        raise errors.UserError("recrl submit: name the command to run after --, e.g. "
                               "recrl submit -- train --data /shared/rc15")  # fmt: skip
    if recrl_args[0] == "recrl":  # `recrl submit -- recrl train ...` means the same
        recrl_args = recrl_args[1:]
    address = resolve_address(args.address)
    print(f"submitting `recrl {' '.join(recrl_args)}` to {address}", file=sys.stderr)
    try:
        outcome = submit(address, recrl_args, working_dir=args.working_dir,
                         wait=not args.no_wait, timeout_s=args.timeout)  # fmt: skip
    except JobFailedError as exc:
        # the last log lines as a report, then the one error line
        headline, _, tail = str(exc).partition("\n")
        if tail:
            print(tail, file=sys.stderr)
        raise errors.JobFailedError(headline) from None
    except JobSubmissionError as exc:
        raise errors.UserError(str(exc)) from None
    if args.no_wait:
        print(outcome.job_id)
        print(f"job {outcome.job_id} {outcome.status}; follow it with `ray job logs --follow "
              f"{outcome.job_id} --address {address}`", file=sys.stderr)  # fmt: skip
    else:
        print(f"job {outcome.job_id} {outcome.status}", file=sys.stderr)
    return 0
