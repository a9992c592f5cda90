"""The board's trtexec parsing against real output of TensorRT 7, 8 and 10 (tests/fixtures/trtexec/).

Every fixture is a verbatim excerpt of output posted publicly (trailing blanks trimmed):

- ``trt7_issue1221_gpu_compute.txt``: https://github.com/NVIDIA/TensorRT/issues/1221
  (label "Release: 7.x"; the multi-line TensorRT 7 summary: ``GPU Compute`` then ``min: ...``);
- ``trt7_issue2054_host_latency.txt``: https://github.com/NVIDIA/TensorRT/issues/2054
  (the same multi-line form, with ``Average on 10 runs`` trace lines and ``percentile: ... at 99%``);
- ``trt8_4_xavier_meta_tegra_952.txt``: https://github.com/OE4T/meta-tegra/pull/952
  (Jetson AGX Xavier, ``[TensorRT v8400]``);
- ``trt8_xavier_nx_meta_tegra_1124.txt``: https://github.com/OE4T/meta-tegra/pull/1124
  (Jetson Xavier NX, TensorRT 8.x with the ``End-to-End Host Latency`` line);
- ``trt_summary_2024_issue4177.txt``: https://github.com/NVIDIA/TensorRT/issues/4177
  (2024 summary with 90/95/99 % percentiles; the thread does not state the version);
- ``trt10_banner_orin_nx_issue90.txt``: https://github.com/NVlabs/FoundationStereo/issues/90
  (Jetson Orin NX, ``[TensorRT v100300]``: the version banner and options of TensorRT 10);
- ``trt10_export_times_fuzzylabs_alexnet.json``: the first 10 entries of
  https://github.com/fuzzylabs/edge-vision-power-estimation/blob/main/desktop/torch_onnx_trtexec/results/alexnet/alexnet_fp16.timing.json
  (``--exportTimes`` of a TensorRT 10 build: its build metadata in the same folder lists
  TensorRT 10 options such as "Weight Streaming"; the run used a 5000 ms warm-up).
"""

import json
from pathlib import Path

import pytest

from nni_lightnas.latency.board_trtexec import (decode_version_tag, exported_times, parse_trtexec_output,
                                                split_flags, timed_runs, trace_averages)
from nni_lightnas.latency.runner import summarize_times

FIXTURES = Path(__file__).parent / 'fixtures' / 'trtexec'


def _text(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_tensorrt7_multiline_summary():
    sections = parse_trtexec_output(_text('trt7_issue1221_gpu_compute.txt'))
    assert sections['gpu_compute'] == {'min': 564.432, 'max': 569.332, 'mean': 567.144, 'median': 567.073}
    assert sections['enqueue'] == {'min': 1.9541, 'max': 8.28448, 'median': 4.74475}


def test_tensorrt7_host_latency_percentile_and_trace():
    text = _text('trt7_issue2054_host_latency.txt')
    with pytest.raises(ValueError, match='GPU Compute Time'):  # this excerpt has no GPU Compute block
        parse_trtexec_output(text)
    host = parse_trtexec_output(text + '[I] GPU Compute\n[I] median: 1.5 ms\n')['latency']
    # the "(end to end ...)" part is not read as a second statistic
    assert host['median'] == pytest.approx(1.65601) and host['max'] == pytest.approx(6.2915)
    assert host['p99'] == pytest.approx(1.67065)
    runs, values = trace_averages(text)
    assert runs == 10 and values == pytest.approx([1.56245, 1.56167, 1.55896, 1.5605, 1.55903])


@pytest.mark.parametrize('name, median, p99, qps, version', [
    ('trt8_4_xavier_meta_tegra_952.txt', 0.388443, 0.393188, 41087.7, '8.4.0'),
    ('trt8_xavier_nx_meta_tegra_1124.txt', 0.564087, 0.578552, 27207.0, None),
    ('trt_summary_2024_issue4177.txt', 7.14139, 12.9485, 130.298, None),
])
def test_tensorrt8_and_later_one_line_summary(name, median, p99, qps, version):
    sections = parse_trtexec_output(_text(name))
    assert sections['gpu_compute']['median'] == pytest.approx(median)
    assert sections['gpu_compute']['p99'] == pytest.approx(p99)
    assert sections['throughput_qps'] == pytest.approx(qps)
    assert sections.get('trtexec_version') == version


def test_end_to_end_host_latency_is_not_the_gpu_time():
    sections = parse_trtexec_output(_text('trt8_xavier_nx_meta_tegra_1124.txt'))
    assert sections['latency']['median'] == pytest.approx(0.572998)  # "Latency:", not "End-to-End Host Latency:"
    assert sections['h2d']['median'] == pytest.approx(0.0065918)


def test_tensorrt10_banner_and_version_tags():
    text = _text('trt10_banner_orin_nx_issue90.txt')
    with pytest.raises(ValueError):
        parse_trtexec_output(text)  # options only, no summary
    assert decode_version_tag('100300') == '10.3.0' and decode_version_tag('8400') == '8.4.0'
    combined = text + _text('trt_summary_2024_issue4177.txt')
    assert parse_trtexec_output(combined)['trtexec_version'] == '10.3.0'


def test_tensorrt10_export_times():
    entries = exported_times(json.loads(_text('trt10_export_times_fuzzylabs_alexnet.json')))
    assert len(entries) == 10
    assert entries[0] == (0.497559, 4999.96, 5000.73)
    kept = timed_runs(entries, 8)  # asked for 8 timed runs: the first 2 entries count as warm-up
    assert kept == entries[2:]
    summary = summarize_times([entry[0] for entry in kept])
    assert summary['median_ms'] == pytest.approx(0.497803) and summary['runs'] == 8
    assert kept[-1][2] - kept[0][1] == pytest.approx(5005.23 - 4999.96 - 1.0)  # the timed span, trtexec's clock


@pytest.mark.parametrize('flag', ['--onnx=x.onnx', '--saveEngine=e', '--loadEngine=e', '--exportTimes=t.json',
                                  '--iterations=5', '--timingCacheFile=c'])
def test_flags_set_by_the_measurement_are_refused(flag):
    with pytest.raises(ValueError, match='set by the measurement itself'):
        split_flags(['--fp16', flag])
