from pathlib import Path

import pytest

from prunekit.machine import CpuInfo, cpu_info, machine_record, parse_cpuinfo

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512vl avx512_bf16 amx_tile amx_bf16 hypervisor
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes sve bf16 i8mm
CPU implementer\t: 0x41
"""


def test_cpuinfo_gives_the_first_cpus_model_and_only_the_flags_that_matter() -> None:
    model, features = parse_cpuinfo(XEON)
    assert model == "Intel(R) Xeon(R) Platinum 8488C"
    assert features == ("amx_bf16", "amx_tile", "avx", "avx2", "avx512_bf16", "avx512f",
                        "avx512vl", "fma", "sse4_2")
    assert parse_cpuinfo(GRAVITON) == ("", ("asimd", "bf16", "i8mm", "sve"))


def test_native_bf16_needs_a_bf16_instruction_set() -> None:
    assert CpuInfo("Xeon", parse_cpuinfo(XEON)[1], 2).native_bf16
    assert not CpuInfo("EPYC 7B13", ("avx", "avx2", "fma"), 2).native_bf16


def test_vector_channels_is_the_fp32_vector_width() -> None:
    assert CpuInfo("Xeon", parse_cpuinfo(XEON)[1], 2).vector_channels == 16
    assert CpuInfo("EPYC 7B13", ("avx", "avx2", "fma"), 2).vector_channels == 8


def test_this_machine_is_described_as_proc_cpuinfo_says() -> None:
    record = machine_record()
    assert record["cpu_model"] == cpu_info().model and record["threads"] >= 1
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = set(next(line for line in cpuinfo.read_text().splitlines()
                     if line.startswith(("flags", "Features"))).split(":")[1].split())
    assert set(record["cpu_features"]) <= flags
    assert ("avx2" in record["cpu_features"]) == ("avx2" in flags)
