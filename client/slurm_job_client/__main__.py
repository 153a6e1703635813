"""``python -m slurm_job_client`` is ``sja``."""

import sys

from slurm_job_client.cli import main

sys.exit(main())
