"""FixedPointQuantizer vs the real ap_fixed casts (hls4ml's bundled ap_types headers, g++ only)."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import keras

from hgq_rewrite.proxy import FixedPointQuantizer

pytestmark = pytest.mark.slow

# (k, B, I): 1-bit types, negative I, I > B, wide types
FORMATS = [(1, 1, 0), (1, 1, 3), (0, 1, -2), (1, 3, 1), (1, 5, -2), (0, 8, 9)]
ROUNDING = ("RND", "TRN", "RND_CONV")
OVERFLOW = ("WRAP", "SAT", "SAT_SYM")


def _ap_types_dir():
    import hls4ml

    return os.path.join(os.path.dirname(hls4ml.__file__), "templates", "vivado", "ap_types")


@pytest.fixture(scope="module")
def ap_results(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not available")
    rng = np.random.default_rng(11)
    x = np.concatenate([
        rng.normal(0, 4, 150), rng.normal(0, 300, 50), np.round(rng.normal(0, 8, 100) * 64) / 128,
        [-0.5, -1.0, -2.0, -4.0, -0.25, 0.5, 1.0, -8.0, -16.0, 0.0],
    ])
    lines = ["#include <cstdio>", '#include "ap_fixed.h"', "int main() {",
             f"static const double xs[{x.size}] = {{{','.join(repr(float(v)) for v in x)}}};"]
    for k, b, i in FORMATS:
        for r in ROUNDING:
            for s in OVERFLOW:
                t = f"ap_{'' if k else 'u'}fixed<{b},{i},AP_{r},AP_{s}>"
                lines.append(f'for (int j = 0; j < {x.size}; j++) {{ {t} v = xs[j]; printf("%.17g\\n", v.to_double()); }}')
    lines.append("}")
    tmp = tmp_path_factory.mktemp("apfixed")
    src, exe = tmp / "cast.cpp", tmp / "cast"
    src.write_text("\n".join(lines))
    subprocess.run(["g++", "-O0", "-std=c++14", f"-I{_ap_types_dir()}", str(src), "-o", str(exe)], check=True)
    out = np.array(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split(), dtype=float)
    results, pos = {}, 0
    for fmt in FORMATS:
        for r in ROUNDING:
            for s in OVERFLOW:
                results[(fmt, r, s)] = out[pos : pos + x.size]
                pos += x.size
    return x, results


@pytest.mark.parametrize("round_mode", ROUNDING)
@pytest.mark.parametrize("overflow_mode", OVERFLOW)
def test_quantizer_equals_ap_fixed_cast(ap_results, round_mode, overflow_mode):
    x, results = ap_results
    for k, b, i in FORMATS:
        layer = FixedPointQuantizer(keep_negative=k, bits=b, integers=i, RND=round_mode, SAT=overflow_mode)
        got = keras.ops.convert_to_numpy(layer(x[:, None]))[:, 0]
        np.testing.assert_array_equal(got, results[((k, b, i), round_mode, overflow_mode)], err_msg=str((k, b, i)))
