"""The HTML report of a pipeline run: figures (matplotlib) and tables (pandas), self-contained.

:func:`write_report` reads a run directory and writes, into the report folder,
``report.html`` (a summary sentence per target, tables with readable headers and units,
figures embedded as base64 PNG, so the file stands alone), the PNG files, and ``final.csv``
(whose columns keep their keys, e.g. ``measured_vs_target_pct``, for other tools). Figures:

* accuracy vs latency: every final net (test accuracy, measured latency) and every stage-2
  candidate (BTE score, predicted latency), the targets marked;
* latency model vs measured (parity plot over the final nets and the calibration nets);
* lambda, the argmax latency against the target and the entropy of alpha over the search;
* alpha heatmap per layer (softmax(alpha) of the search);
* evolution scatter: BTE score vs latency, the budget line and the chosen net;
* the closed loop after export, one table row per round (``landing_rounds.csv``);
* energy per inference of the final nets (predicted and measured, against the energy target),
  when the rows carry it (a LUT profiled with ``SSHDevice(energy=True)``).
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .atomic import atomic_write, atomic_write_text  # noqa: E402

__all__ = ['write_report', 'final_table', 'landing_table', 'target_summaries', 'COLUMN_TITLES']

_logger = logging.getLogger(__name__)


def final_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The final table: target, the search's argmax and export, measured with spread, accuracy, params, FLOPs.

    ``argmax_ms`` is the plain argmax of alpha, ``exported_ms`` the stage-1 export and ``landed``
    whether the landing step moved it away from the argmax; ``alpha_entropy_pct`` is the final
    entropy of alpha as a share of its maximum (100: uniform); ``rounds`` the closed loop's rounds
    (1: the first final net measured within the tolerance, or no loop).

    Examples
    --------
    >>> row = {'target_ms': 1.0, 'predicted_ms': 1.0, 'measured_ms': 1.01, 'measured_p25_ms': 1.0,
    ...        'measured_p75_ms': 1.02, 'test_acc': 0.8, 'params_m': 0.1, 'batch': 32, 'device': 'local',
    ...        'arch': 'skip-skip-skip', 'rounds': 2}
    >>> final_table([row])[['measured_vs_target_pct', 'rounds']].round(3).values.tolist()
    [[1.0, 2.0]]
    """
    table = pd.DataFrame([{
        'target_ms': row['target_ms'], 'argmax_ms': row.get('argmax_ms'),
        'exported_ms': row.get('exported_ms', row['predicted_ms']), 'landed': row.get('landed'),
        'alpha_entropy_pct': None if row.get('alpha_entropy_fraction') is None
        else 100 * row['alpha_entropy_fraction'],
        'evolved_pred_ms': row.get('evolved_predicted_ms'),
        'measured_ms': row['measured_ms'], 'measured_iqr_ms': row['measured_p75_ms'] - row['measured_p25_ms'],
        'measured_vs_target_pct': 100 * (row['measured_ms'] / row['target_ms'] - 1),
        'test_acc_pct': 100 * row['test_acc'], 'params_m': row['params_m'], 'flops_m': row.get('flops_m'),
        'rounds': row.get('rounds', 1),
        'batch': row['batch'], 'device': row['device'], 'arch': row['arch']} for row in rows])
    for column in ENERGY_KEYS:  # energy columns only when some row carries them
        if any(row.get(column) is not None for row in rows):
            table.insert(len(table.columns) - 3, column, [row.get(column) for row in rows])
    return table


def landing_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The closed loop, one line per round of every target: target, predicted, measured, error.

    ``predicted_ms`` is the stage-1 latency model's prediction of the round's export (corrected
    from round 2 on, by ``landing_factor``), ``measured_ms`` the round's final net on the device.

    Examples
    --------
    >>> rounds = [{'round': 1, 'arch': 'a', 'target_ms': 1.0, 'predicted_ms': 1.0, 'measured_ms': 1.2,
    ...            'evolved_predicted_ms': None, 'landing_factor': 1.0, 'relative_error': 0.2}]
    >>> landing_table([{'landing_rounds': rounds, 'chosen_round': 1}])['relative_error_pct'].round(6).tolist()
    [20.0]
    """
    lines = [{'target_ms': item['target_ms'], 'round': item['round'], 'arch': item['arch'],
              'predicted_ms': item['predicted_ms'], 'stage2_ms': item.get('evolved_predicted_ms'),
              'measured_ms': item['measured_ms'], 'relative_error_pct': 100 * item['relative_error'],
              'landing_factor': item.get('landing_factor', 1.0), 'shipped': item['round'] == row.get('chosen_round')}
             for row in rows for item in row.get('landing_rounds') or []]
    return pd.DataFrame(lines, columns=['target_ms', 'round', 'arch', 'predicted_ms', 'stage2_ms', 'measured_ms',
                                        'relative_error_pct', 'landing_factor', 'shipped'])


#: Column headers of the report's HTML tables (``final.csv`` and ``landing_rounds.csv`` keep the keys).
COLUMN_TITLES = {
    'target_ms': 'target (ms)', 'argmax_ms': "search's argmax (ms)", 'exported_ms': 'stage-1 export (ms)',
    'landed': 'moved by landing step', 'alpha_entropy_pct': 'alpha entropy (% of max)',
    'evolved_pred_ms': 'stage-2 widths, predicted (ms)', 'measured_ms': 'measured (ms)',
    'measured_iqr_ms': 'measured IQR (ms)', 'measured_vs_target_pct': 'vs target (%)',
    'test_acc_pct': 'test accuracy (%)', 'params_m': 'parameters (M)', 'flops_m': 'MFLOPs',
    'rounds': 'closed-loop rounds', 'batch': 'batch', 'device': 'device', 'arch': 'architecture',
    'target_energy_mj': 'energy target (mJ)', 'predicted_energy_mj': 'energy, predicted (mJ)',
    'measured_energy_mj': 'energy, measured (mJ)', 'round': 'round', 'predicted_ms': 'predicted (ms)',
    'stage2_ms': 'stage-2 prediction (ms)', 'relative_error_pct': 'error (%)',
    'landing_factor': 'correction factor', 'shipped': 'shipped'}


def target_summaries(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One sentence per target: the final net's measured latency against the target, its accuracy, the rounds.

    Examples
    --------
    >>> row = {'target_ms': 2.0, 'measured_ms': 1.98, 'test_acc': 0.856, 'rounds': 1, 'argmax_ms': 2.05,
    ...        'landed': False}
    >>> first, second = target_summaries([row])[0].split('; ')
    >>> first
    'Target 2 ms: the final net measured 1.98 ms (-1.00 %), test accuracy 85.6 %, after 1 closed-loop round'
    >>> print(second)
    the search's plain argmax predicted 2.05 ms (+2.50 %), exported as it was.
    """
    sentences = []
    for row in rows:
        target, measured, rounds = row['target_ms'], row['measured_ms'], int(row.get('rounds', 1) or 1)
        sentence = (f"Target {target:g} ms: the final net measured {measured:.4g} ms "
                    f"({100 * (measured / target - 1):+.2f} %), test accuracy {100 * row['test_acc']:.1f} %, "
                    f"after {rounds} closed-loop round{'s' if rounds != 1 else ''}")
        if row.get('argmax_ms') is not None:
            moved = 'moved by the landing step' if row.get('landed') else 'exported as it was'
            sentence += (f"; the search's plain argmax predicted {row['argmax_ms']:.4g} ms "
                         f"({100 * (row['argmax_ms'] / target - 1):+.2f} %), {moved}")
        sentences.append(sentence + '.')
    return sentences


def _html_table(table: pd.DataFrame, table_id: str) -> str:
    return table.rename(columns=COLUMN_TITLES).to_html(index=False, float_format=lambda v: f'{v:.4g}', border=0,
                                                       table_id=table_id)


#: Energy keys a row may carry (mJ per inference); each becomes a column of the final table.
ENERGY_KEYS = ('target_energy_mj', 'predicted_energy_mj', 'measured_energy_mj')


def _energy_bars(rows, directory: Path) -> str | None:
    """Bars of predicted and measured energy per final net, the energy target as a tick; ``None`` without energy."""
    if not any(row.get('predicted_energy_mj') is not None or row.get('measured_energy_mj') is not None
               for row in rows):
        return None
    figure, axis = plt.subplots(figsize=(max(4.5, 1.2 * len(rows) + 2), 3.6))
    positions = range(len(rows))
    for offset, key, label in ((-0.2, 'predicted_energy_mj', 'energy model'), (0.2, 'measured_energy_mj', 'measured')):
        values = [row.get(key) for row in rows]
        if any(value is not None for value in values):
            axis.bar([x + offset for x in positions], [float('nan') if v is None else v for v in values], width=0.4,
                     label=label)
    targets = [(x, row['target_energy_mj']) for x, row in zip(positions, rows) if row.get('target_energy_mj')]
    if targets:
        axis.scatter([t[0] for t in targets], [t[1] for t in targets], marker='_', s=900, color='red', zorder=3,
                     label='energy target')
    axis.set_xticks(list(positions), [f'T={row["target_ms"]:g} ms' for row in rows])
    axis.set_ylabel('energy per inference (mJ)')
    axis.set_title('Energy of the final nets')
    axis.legend(fontsize=8)
    return _png(figure, directory / 'energy.png')


def _png(figure, path: Path) -> str:
    figure.tight_layout()
    with atomic_write(path, 'wb') as file:
        figure.savefig(file, dpi=110, format='png')
    plt.close(figure)
    return base64.b64encode(path.read_bytes()).decode()


def _parity(rows, calibration: pd.DataFrame | None, directory: Path) -> str:
    figure, axis = plt.subplots(figsize=(4.8, 4.4))
    points: list[float] = []
    if calibration is not None and len(calibration):
        axis.scatter(calibration['lut_ms'], calibration['measured_ms'], s=14, color='tab:grey', alpha=0.7,
                     label='calibration nets, per-op LUT sum')
        axis.scatter(calibration['calibrated_ms'], calibration['measured_ms'], s=14, color='tab:orange',
                     label='calibration nets, calibrated LUT')
        points += list(calibration['lut_ms']) + list(calibration['calibrated_ms']) + list(calibration['measured_ms'])
    predicted = [row.get('evolved_predicted_ms') or row['predicted_ms'] for row in rows]
    measured = [row['measured_ms'] for row in rows]
    errors = [[max(row['measured_ms'] - row['measured_p25_ms'], 0.0) for row in rows],
              [max(row['measured_p75_ms'] - row['measured_ms'], 0.0) for row in rows]]
    axis.errorbar(predicted, measured, yerr=errors, fmt='o', color='tab:blue', label='final nets (IQR)')
    points += predicted + measured
    low, high = min(points) * 0.9, max(points) * 1.1
    axis.plot([low, high], [low, high], '--', color='grey', label='y = x')
    axis.set_xlabel('latency model (ms)')
    axis.set_ylabel('measured median (ms)')
    axis.set_title('Latency model vs measured')
    axis.legend(fontsize=8)
    return _png(figure, directory / 'parity.png')


def _search_curves(histories: dict[float, pd.DataFrame], directory: Path) -> str:
    figure, (left, right, entropy) = plt.subplots(1, 3, figsize=(13, 3.6))
    for target, history in histories.items():
        line, = left.plot(history['epoch'], history['argmax_ms'], marker='o', label=f'argmax, T={target:g}')
        left.axhline(target, color=line.get_color(), linestyle='--', linewidth=1)
        right.plot(history['epoch'], history['lambda'], marker='o', label=f'T={target:g}')
        if 'alpha_entropy_fraction' in history:
            entropy.plot(history['epoch'], 100 * history['alpha_entropy_fraction'], marker='o', label=f'T={target:g}')
    entropy.set_xlabel('epoch')
    entropy.set_ylabel('% of the maximum')
    entropy.set_ylim(0, 105)
    entropy.set_title('Entropy of alpha (100: uniform)')
    left.set_xlabel('epoch')
    left.set_ylabel('latency (ms)')
    left.set_title('Latency of the argmax arch vs target (dashed)')
    left.legend(fontsize=7)
    right.set_xlabel('epoch')
    right.set_ylabel('lambda')
    right.set_title('Learned multiplier lambda')
    right.axhline(0, color='grey', linewidth=0.8)
    return _png(figure, directory / 'search.png')


def _alpha_heatmap(alpha: dict[str, dict[str, float]], target: float, directory: Path) -> str:
    labels = list(alpha)
    ops = list(next(iter(alpha.values())))
    matrix = [[alpha[label].get(op, 0.0) for op in ops] for label in labels]
    figure, axis = plt.subplots(figsize=(6, 0.35 * len(labels) + 1.5))
    image = axis.imshow(matrix, cmap='viridis', aspect='auto')
    axis.set_xticks(range(len(ops)), ops, rotation=45, ha='right')
    axis.set_yticks(range(len(labels)), labels)
    axis.set_title(f'softmax(alpha) per layer, T={target:g} ms')
    figure.colorbar(image, ax=axis)
    return _png(figure, directory / f'alpha_T{target:g}.png')


def _scored_candidates(trials: Sequence[dict]) -> list[tuple[float, float]]:
    """(stage-2 latency, BTE score) of every trial that reported both."""
    return [(t['latency_ms'], t['default']) for t in trials
            if t.get('latency_ms') is not None and t.get('default') is not None]


def _evolution_scatter(trials_by_target: dict[float, list[dict]], rows, directory: Path) -> str:
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for row in rows:
        trials = trials_by_target.get(row['target_ms'], [])
        points = _scored_candidates(trials)
        if points:
            scatter = axis.scatter([p[0] for p in points], [p[1] for p in points], alpha=0.7,
                                   label=f'candidates, T={row["target_ms"]:g}')
            axis.axvline(row['target_ms'], color=scatter.get_facecolor()[0], linestyle='--', linewidth=1)
            best = max(points, key=lambda p: p[1])
            axis.scatter([best[0]], [best[1]], marker='*', s=220, color='red', zorder=3)
    axis.set_xlabel('latency (ms, stage-2 latency model)')
    axis.set_ylabel('BTE score')
    axis.set_title('Stage 2: BTE score vs latency (budget dashed, chosen *)')
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=7)
    return _png(figure, directory / 'evolution.png')


def _accuracy_vs_latency(trials_by_target: dict[float, list[dict]], rows, directory: Path) -> str:
    """Every net the run trained or scored: final nets (test accuracy vs measured latency, starred), and
    the stage-2 candidates (BTE score vs their stage-2 latency, right axis), targets dashed."""
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    scores = axis.twinx()
    for index, row in enumerate(rows):
        color = f'C{index % 10}'
        points = _scored_candidates(trials_by_target.get(row['target_ms'], []))
        if points:
            scores.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.35, color=color,
                           label=f'stage-2 candidates, T={row["target_ms"]:g}')
        axis.axvline(row['target_ms'], color=color, linestyle='--', linewidth=1)
        axis.scatter([row['measured_ms']], [100 * row['test_acc']], marker='*', s=240, color=color,
                     edgecolor='black', zorder=3, label=f'final net, T={row["target_ms"]:g}')
    axis.set_xlabel('latency (ms; final nets measured, candidates predicted)')
    axis.set_ylabel('test accuracy of the final nets (%)')
    scores.set_ylabel('BTE score of the candidates (higher is better)')
    axis.set_title('Accuracy vs latency (targets dashed, final nets *)')
    handles = axis.get_legend_handles_labels()[0] + scores.get_legend_handles_labels()[0]
    labels = axis.get_legend_handles_labels()[1] + scores.get_legend_handles_labels()[1]
    if handles:
        axis.legend(handles, labels, fontsize=7, loc='lower right')
    axis.set_zorder(scores.get_zorder() + 1)
    axis.patch.set_visible(False)
    return _png(figure, directory / 'accuracy_vs_latency.png')


def write_report(run_dir: Path, rows: Sequence[dict[str, Any]], lut, directory: Path) -> Path:
    """Write ``report.html`` (and its PNG/CSV files) for the rows of a pipeline run.

    Examples
    --------
    >>> write_report(Path('runs/fashion_mnist'), rows, lut, Path('runs/fashion_mnist/report'))  # doctest: +SKIP
    """
    directory.mkdir(parents=True, exist_ok=True)
    table = final_table(rows)
    with atomic_write(directory / 'final.csv', newline='') as file:
        table.to_csv(file, index=False)
    loop = landing_table(rows)
    with atomic_write(directory / 'landing_rounds.csv', newline='') as file:
        loop.to_csv(file, index=False)
    histories, trials, alphas = {}, {}, {}
    for row in rows:
        base = Path(row['run_dir'])
        histories[row['target_ms']] = pd.read_csv(base / 'search' / 'history.csv')
        alphas[row['target_ms']] = json.loads((base / 'search' / 'alpha.json').read_text())
        trials_file = base / 'evolve' / 'trials.jsonl'
        trials[row['target_ms']] = [json.loads(line) for line in trials_file.read_text().splitlines()
                                    if line.strip()] if trials_file.is_file() else []
    calibration_file = run_dir / 'profile' / 'calibration.csv'
    calibration = pd.read_csv(calibration_file) if calibration_file.is_file() else None
    figures = [('Accuracy vs latency', _accuracy_vs_latency(trials, rows, directory)),
               ('Latency model vs measured', _parity(rows, calibration, directory)),
               ('Search: latency, lambda and the entropy of alpha', _search_curves(histories, directory))]
    figures += [(f'Architecture probabilities, target {target:g} ms', _alpha_heatmap(alpha, target, directory))
                for target, alpha in alphas.items()]
    figures.append(('Stage 2 evolution', _evolution_scatter(trials, rows, directory)))
    energy = _energy_bars(rows, directory)
    if energy is not None:
        figures.append(('Energy per inference', energy))
    meta = lut.metadata
    facts = {key: meta.get(key) for key in ('device', 'runtime', 'provider', 'threads', 'batch', 'date')
             if meta.get(key) is not None}
    if meta.get('calibration'):
        fit = meta['calibration']
        facts['calibration'] = (f"measured = {fit['scale']:.4f} x LUT + {fit['offset_ms']:.4f} ms, fitted on "
                                f"{fit.get('num_archs', '?')} random nets (rms residual "
                                f"{fit.get('rms_residual_ms', float('nan')):.4f} ms)")
    parts = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>nni-lightnas report</title>',
             '<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}'
             'td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}img{max-width:100%;margin:1em 0}</style>',
             '</head><body>', f'<h1>nni-lightnas run: {html.escape(str(run_dir))}</h1>',
             '<h2>Summary</h2><ul>' + ''.join(f'<li>{html.escape(sentence)}</li>'
                                              for sentence in target_summaries(rows)) + '</ul>',
             '<h2>Final networks</h2>', _html_table(table, 'final-table'),
             '<h2>Closed loop: every round (target, predicted, measured)</h2>', _html_table(loop, 'landing-rounds'),
             '<h2>Device</h2><ul>' + ''.join(f'<li>{html.escape(k)}: {html.escape(str(v))}</li>'
                                             for k, v in facts.items()) + '</ul>']
    for title, encoded in figures:
        parts.append(f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
                     f'src="data:image/png;base64,{encoded}">')
    parts.append('</body></html>')
    path = directory / 'report.html'
    atomic_write_text(path, '\n'.join(parts))
    _logger.info('report written to %s', path)
    return path
