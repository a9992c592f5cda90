"""``nni-lightnas pipeline``: the whole job (profile, search, evolve, train, export, measure, report)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', required=True, help='pipeline YAML (e.g. examples/fashion_mnist/pipeline.yml)')
    parser.add_argument('--quick', action='store_true', help="apply the config's quick: settings")
    parser.add_argument('--from', dest='from_stage', default=None,
                        choices=['profile', 'search', 'evolve', 'train', 'export', 'report'],
                        help='rerun from this stage on: profile, search, evolve, train, export, report')
    parser.add_argument('--run-dir', default=None, help="override the config's run_dir")
    parser.add_argument('--data-dir', default=None,
                        help="override the config's data_dir (CIFAR-10 or an ImageNet-style folder; "
                             "Fashion-MNIST defaults to the Debian package)")
    parser.add_argument('--target-energy-mj', type=float, default=None,
                        help="override the config's target_energy_mj: an energy budget per inference (mJ) beside "
                             "every latency target; the profiled LUT must have an energy_mj column")


def run(args: argparse.Namespace) -> int:
    from nni_lightnas.pipeline import load_pipeline_config, run_pipeline
    from nni_lightnas.report import final_table
    from nni_lightnas.atomic import check_output_path
    config = load_pipeline_config(args.config, quick=args.quick)  # every setting checked before any work
    if args.run_dir:
        config.run_dir = args.run_dir
    if args.data_dir:
        config.data_dir = args.data_dir
    if args.target_energy_mj is not None:
        if not args.target_energy_mj > 0:
            raise ValueError(f'--target-energy-mj must be a positive number of mJ, got {args.target_energy_mj}')
        config.target_energy_mj = args.target_energy_mj
    check_output_path(config.run_dir, what='run_dir', directory=True)
    result = run_pipeline(config, from_stage=args.from_stage, progress=lambda line: print(line, flush=True))
    table = final_table(result['rows']).drop(columns=['arch'])
    print()
    print(table.to_string(index=False, float_format=lambda v: f'{v:.4g}'))
    print(f"\nreport: {result['report']}")
    return 0
