"""amd_gpu_facts and its module_utils against recorded-style KFD topologies (fixtures/topology/) and PCI buses
(fixtures/pci/)."""

import json
import pathlib
import shutil

import pytest
import yaml
from ansible.module_utils import amd_topology  # plugins/module_utils/, through tests/unit/conftest.py
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from plugins.modules import amd_gpu_facts

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "topology"
PCI_FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "pci"
GIB = 1024**3
SYSFS_PCI_FILES = ("vendor", "device", "class", "numa_node", "subsystem_vendor", "subsystem_device", "revision")
MI300X_BUSES = ["0c", "22", "38", "5c", "9f", "af", "bf", "df"]
MI355X_BUSES = ["05", "15", "65", "75", "85", "95", "e5", "f5"]


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture
def run_module(monkeypatch):
    """Run the module's main() with arguments; returns exit_json's kwargs or raises FailJson."""
    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(args):
        with patch_module_args(args), pytest.raises(ExitJson) as result:
            amd_gpu_facts.main()
        return result.value.args[0]

    return run


def make_dev(dev_root: pathlib.Path, render_minors, kfd=True, cards=0):
    """Device nodes as plain files: the module only checks that they exist."""
    (dev_root / "dri").mkdir(parents=True, exist_ok=True)
    if kfd:
        (dev_root / "kfd").touch()
    for minor in render_minors:
        (dev_root / "dri" / f"renderD{minor}").touch()
    for index in range(cards):
        (dev_root / "dri" / f"card{index}").touch()
    return dev_root


def render_minors_of(topology: pathlib.Path):
    facts = amd_topology.collect_gpu_facts(str(topology), "/nonexistent")
    return [gpu["render_minor"] for gpu in facts["gpus"]]


def copy_fixture(name, tmp_path):
    return pathlib.Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def build_pci_bus(name, sys_root: pathlib.Path, driver_for_amd_gpus=None):
    """The sysfs PCI tree a fixture describes, laid out as the kernel does it: function directories under
    devices/, bus/pci/devices/<address> symlinks to them, driver and physfn symlinks. Returns bus/pci/devices."""
    functions = json.loads((PCI_FIXTURES / f"{name}.json").read_text())["functions"]
    devices = sys_root / "devices" / "pci0000:00"
    bus = sys_root / "bus" / "pci" / "devices"
    bus.mkdir(parents=True)
    for address, entry in functions.items():
        function_dir = devices / address
        function_dir.mkdir(parents=True)
        for attribute in SYSFS_PCI_FILES:
            (function_dir / attribute).write_text(entry[attribute] + "\n")
        driver = entry.get("driver")
        if driver_for_amd_gpus and entry["vendor"] == "0x1002" and entry["class"] == "0x120000":
            driver = driver_for_amd_gpus
        if driver:
            (sys_root / "bus" / "pci" / "drivers" / driver).mkdir(parents=True, exist_ok=True)
            (function_dir / "driver").symlink_to(f"../../../bus/pci/drivers/{driver}")
        if "physfn" in entry:
            (function_dir / "physfn").symlink_to(f"../{entry['physfn']}")
        (bus / address).symlink_to(f"../../../devices/pci0000:00/{address}")
    return bus


@pytest.mark.parametrize("version, target", [
    (90402, "gfx942"), (90500, "gfx950"), (90010, "gfx90a"), (90012, "gfx90c"), (90008, "gfx908"),
    (100100, "gfx1010"), (100300, "gfx1030"), (110001, "gfx1101"), (120001, "gfx1201"), (0, None),
])
def test_gfx_target_follows_the_runtime_hex_digits(version, target):
    assert amd_topology.gfx_target_name(version) == target


@pytest.mark.parametrize("device_id, name", [
    (0x74A1, "AMD Instinct MI300X"), (0x74A0, "AMD Instinct MI300A"), (0x74A2, "AMD Instinct MI308X"),
    (0x74A5, "AMD Instinct MI325X"), (0x75A0, "AMD Instinct MI350X"), (0x75A3, "AMD Instinct MI355X"),
    (0x744C, "Unknown AMD GPU (device 0x744c)"),
])
def test_marketing_name_from_the_device_id(device_id, name):
    assert amd_topology.marketing_name(device_id) == name


@pytest.mark.parametrize("domain, location_id, bdf", [
    (0, 0x0C00, "0000:0c:00.0"), (0, (0x5C << 8) | (1 << 3) | 2, "0000:5c:01.2"), (1, 0xDF00, "0001:df:00.0"),
])
def test_pci_address_from_location_id(domain, location_id, bdf):
    assert amd_topology.pci_bdf(domain, location_id) == bdf


def test_properties_parser_keeps_integers_and_skips_the_rest():
    text = "level 2\nsize 4096\nsibling_map 1,1,0,0\n\nname ip discovery\nhive_id 17303961445947052104\n"
    assert amd_topology.parse_properties(text) == {"level": 2, "size": 4096, "hive_id": 17303961445947052104}


EXPECTED = {
    # fixture: (count, targets, names, VRAM GiB each (rounded), GPUs on NUMA node 0 and 1)
    "mi300x-8gpu": (8, ["gfx942"], ["AMD Instinct MI300X"], 192, (4, 4)),
    "mi325x-8gpu": (8, ["gfx942"], ["AMD Instinct MI325X"], 256, (4, 4)),
    "mi355x-8gpu": (8, ["gfx950"], ["AMD Instinct MI355X"], 288, (4, 4)),
    "mi300x-7gpu": (7, ["gfx942"], ["AMD Instinct MI300X"], 192, (3, 4)),
}


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_collect_reads_each_machine(fixture, tmp_path):
    count, targets, names, vram_gib, per_numa = EXPECTED[fixture]
    dev = make_dev(tmp_path / "dev", range(128, 128 + count), cards=count)
    facts = amd_topology.collect_gpu_facts(str(FIXTURES / fixture), str(dev))
    assert facts["count"] == count == len(facts["gpus"])
    assert facts["cpu_node_count"] == 2
    assert facts["gfx_targets"] == targets
    assert facts["marketing_names"] == names
    assert round(facts["vram_bytes_min"] / GIB) == vram_gib
    assert facts["vram_bytes_total"] == sum(gpu["vram_bytes"] for gpu in facts["gpus"])
    assert [gpu["node_id"] for gpu in facts["gpus"]] == list(range(2, 2 + count))
    numa = [gpu["numa_node"] for gpu in facts["gpus"]]
    assert (numa.count(0), numa.count(1)) == per_numa
    assert facts["missing_render_nodes"] == []
    assert facts["render_nodes"] == [str(dev / "dri" / f"renderD{minor}") for minor in range(128, 128 + count)]
    assert facts["card_nodes"] == [str(dev / "dri" / f"card{index}") for index in range(count)]
    assert facts["kfd_present"] and facts["topology_present"]
    assert len({gpu["gpu_id"] for gpu in facts["gpus"]}) == count
    assert len({gpu["pci_bdf"] for gpu in facts["gpus"]}) == count


def test_gpu_record_of_an_mi300x(tmp_path):
    dev = make_dev(tmp_path / "dev", range(128, 136))
    first = amd_topology.collect_gpu_facts(str(FIXTURES / "mi300x-8gpu"), str(dev))["gpus"][0]
    assert first["device_id"] == "0x74a1" and first["vendor_id"] == "0x1002"
    assert first["gfx_target"] == "gfx942" and first["gfx_target_version"] == 90402
    assert first["compute_units"] == 304 and first["simd_count"] == 1216 and first["num_xcc"] == 8
    assert first["vram_bytes"] == 196592 * 1024**2
    assert first["pci_bdf"] == "0000:0c:00.0" and first["location_id"] == 0x0C00
    assert first["numa_node"] == 0 and first["render_minor"] == 128 and first["render_node_present"]
    assert first["max_engine_clock_mhz"] == 2100


def test_mi355x_is_gfx950_with_256_compute_units(tmp_path):
    facts = amd_topology.collect_gpu_facts(str(FIXTURES / "mi355x-8gpu"), str(tmp_path))
    assert {gpu["compute_units"] for gpu in facts["gpus"]} == {256}
    assert {gpu["device_id"] for gpu in facts["gpus"]} == {"0x75a3"}


def test_missing_render_node_is_reported(tmp_path):
    topology = FIXTURES / "mi300x-7gpu"
    minors = render_minors_of(topology)
    dev = make_dev(tmp_path / "dev", [minor for minor in minors if minor != 131])
    facts = amd_topology.collect_gpu_facts(str(topology), str(dev))
    assert facts["missing_render_nodes"] == [str(dev / "dri" / "renderD131")]
    assert [gpu["node_id"] for gpu in facts["gpus"] if not gpu["render_node_present"]] == [5]
    assert facts["count"] == 7


def test_host_without_the_driver(tmp_path):
    facts = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd" / "topology"), str(tmp_path / "dev"))
    assert facts["source"] == "none" and facts["pci_count"] == 0
    assert facts["count"] == 0 and facts["gpus"] == []
    assert not facts["kfd_present"] and not facts["topology_present"]
    assert facts["vram_bytes_min"] == 0 and facts["gfx_targets"] == [] and facts["card_nodes"] == []


def test_host_with_the_driver_but_no_gpu(tmp_path):
    dev = make_dev(tmp_path / "dev", [])
    facts = amd_topology.collect_gpu_facts(str(FIXTURES / "cpu-only"), str(dev))
    assert facts["kfd_present"] and facts["topology_present"]
    assert facts["cpu_node_count"] == 2 and facts["count"] == 0 and facts["marketing_names"] == []


def test_gpu_without_a_link_to_a_cpu_node_has_numa_minus_one(tmp_path):
    topology = copy_fixture("mi300x-8gpu", tmp_path)
    shutil.rmtree(topology / "nodes" / "4" / "io_links")
    gpus = amd_topology.collect_gpu_facts(str(topology), str(tmp_path))["gpus"]
    assert [gpu["numa_node"] for gpu in gpus] == [0, 0, -1, 0, 1, 1, 1, 1]


def test_vram_counts_frame_buffer_heaps_only(tmp_path):
    topology = copy_fixture("mi300x-8gpu", tmp_path)
    banks = topology / "nodes" / "2" / "mem_banks"
    (banks / "1").mkdir()
    (banks / "1" / "properties").write_text("heap_type 2\nsize_in_bytes 1024\nflags 0\nwidth 0\nmem_clk_max 0\n")
    (banks / "2").mkdir()
    (banks / "2" / "properties").write_text("heap_type 0\nsize_in_bytes 4096\nflags 0\nwidth 0\nmem_clk_max 0\n")
    gpus = amd_topology.collect_gpu_facts(str(topology), str(tmp_path))["gpus"]
    assert gpus[0]["vram_bytes"] == 196592 * 1024**2 + 1024
    assert amd_topology.collect_gpu_facts(str(topology), str(tmp_path))["vram_bytes_min"] == 196592 * 1024**2


def test_nodes_are_in_numeric_order_past_nine(tmp_path):
    """sysfs lists nodes/10 before nodes/2; GPUs must come in node order."""
    topology = copy_fixture("mi300x-8gpu", tmp_path)
    for node_id in (10, 11):
        shutil.copytree(topology / "nodes" / "9", topology / "nodes" / str(node_id))
        properties = topology / "nodes" / str(node_id) / "properties"
        text = properties.read_text().replace("drm_render_minor 135", f"drm_render_minor {126 + node_id}")
        properties.write_text(text)
    gpus = amd_topology.collect_gpu_facts(str(topology), str(tmp_path))["gpus"]
    assert [gpu["node_id"] for gpu in gpus] == list(range(2, 12))
    assert [gpu["render_minor"] for gpu in gpus] == list(range(128, 138))


def test_unreadable_properties_raise_topology_error(tmp_path):
    topology = copy_fixture("mi300x-8gpu", tmp_path)
    (topology / "nodes" / "3" / "properties").unlink()
    (topology / "nodes" / "3" / "properties").mkdir()
    with pytest.raises(amd_topology.TopologyError, match="nodes/3/properties"):
        amd_topology.collect_gpu_facts(str(topology), str(tmp_path))


def test_module_returns_the_facts(run_module, tmp_path):
    dev = make_dev(tmp_path / "dev", range(128, 136), cards=8)
    result = run_module({"topology_root": str(FIXTURES / "mi300x-8gpu"), "dev_root": str(dev),
                         "pci_root": str(tmp_path / "no-pci")})
    facts = result["ansible_facts"]["amd_gpu"]
    assert result["changed"] is False
    assert result["ansible_facts"]["amd_gpu_source"] == facts["source"] == "kfd"
    assert facts["count"] == 8 and facts["gfx_targets"] == ["gfx942"]
    assert facts["marketing_names"] == ["AMD Instinct MI300X"]
    assert facts == json.loads(json.dumps(facts)), "facts must be plain JSON types"


def test_module_check_mode_gives_the_same_facts(run_module, tmp_path):
    dev = make_dev(tmp_path / "dev", range(128, 136))
    args = {"topology_root": str(FIXTURES / "mi355x-8gpu"), "dev_root": str(dev), "pci_root": str(tmp_path / "no-pci")}
    normal = run_module(args)
    checked = run_module({**args, "_ansible_check_mode": True})
    assert checked["changed"] is False
    assert checked["ansible_facts"] == normal["ansible_facts"]
    assert checked["ansible_facts"]["amd_gpu"]["gfx_targets"] == ["gfx950"]


def test_module_reports_a_missing_render_node(run_module, tmp_path):
    topology = FIXTURES / "mi300x-7gpu"
    dev = make_dev(tmp_path / "dev", [minor for minor in render_minors_of(topology) if minor != 134])
    facts = run_module({"topology_root": str(topology), "dev_root": str(dev),
                        "pci_root": str(tmp_path / "no-pci")})["ansible_facts"]["amd_gpu"]
    assert facts["count"] == 7
    assert facts["missing_render_nodes"] == [str(dev / "dri" / "renderD134")]


def test_module_on_a_host_without_the_driver_does_not_fail(run_module, tmp_path):
    result = run_module({"topology_root": str(tmp_path / "absent"), "dev_root": str(tmp_path / "dev"),
                         "pci_root": str(build_pci_bus("no-gpu", tmp_path / "sys"))})
    facts = result["ansible_facts"]["amd_gpu"]
    assert facts["count"] == 0 and facts["kfd_present"] is False and facts["topology_present"] is False
    assert result["ansible_facts"]["amd_gpu_source"] == "none" and facts["pci_count"] == 0


def test_module_fails_with_the_unreadable_file(run_module, tmp_path):
    topology = copy_fixture("mi325x-8gpu", tmp_path)
    bank = topology / "nodes" / "7" / "mem_banks" / "0" / "properties"
    bank.unlink()
    bank.mkdir()
    with pytest.raises(FailJson) as failure:
        run_module({"topology_root": str(topology), "dev_root": str(tmp_path), "pci_root": str(tmp_path / "no-pci")})
    assert "Cannot read the KFD topology" in failure.value.args[0]["msg"]
    assert "nodes/7/mem_banks/0/properties" in failure.value.args[0]["msg"]


# --- The PCI bus: the fallback before the driver is loaded -------------------------------------------------------

@pytest.mark.parametrize("address, expected", [
    ("0000:0c:00.0", (0, 0x0C00)), ("0000:5c:01.2", (0, (0x5C << 8) | (1 << 3) | 2)),
    ("10000:e1:1f.7", (0x10000, (0xE1 << 8) | (0x1F << 3) | 7)), ("0000:0c:00.8", None), ("pci0000:00", None),
])
def test_pci_address_parsing(address, expected):
    assert amd_topology.parse_pci_address(address) == expected


def test_pci_addresses_round_trip_through_the_kfd_form():
    for bus in MI300X_BUSES + MI355X_BUSES:
        address = f"0000:{bus}:00.0"
        assert amd_topology.pci_bdf(*amd_topology.parse_pci_address(address)) == address


def test_model_table_targets_and_memory():
    targets = {model.gfx_target for model in amd_topology.GPU_MODELS.values()}
    assert targets == {"gfx908", "gfx90a", "gfx942", "gfx950"}
    vram = {device_id: model.vram_gib for device_id, model in amd_topology.GPU_MODELS.items()}
    assert (vram[0x74A1], vram[0x74A5], vram[0x75A0], vram[0x75A3]) == (192, 256, 288, 288)
    assert vram[0x74B5] is None and vram[0x740C] is None


PCI_EXPECTED = {
    # fixture: (buses, device ID, LLVM target, name, VRAM GiB from the spec table)
    "mi300x-8gpu": (MI300X_BUSES, "0x74a1", "gfx942", "AMD Instinct MI300X", 192),
    "mi355x-8gpu": (MI355X_BUSES, "0x75a3", "gfx950", "AMD Instinct MI355X", 288),
}


@pytest.mark.parametrize("fixture", sorted(PCI_EXPECTED))
def test_without_the_driver_the_gpus_come_from_the_pci_bus(fixture, tmp_path):
    buses, device_id, target, name, vram_gib = PCI_EXPECTED[fixture]
    pci = build_pci_bus(fixture, tmp_path / "sys")
    facts = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd"), str(tmp_path / "dev"), str(pci))
    assert facts["source"] == "pci" and not facts["topology_present"] and not facts["kfd_present"]
    assert facts["count"] == facts["pci_count"] == 8 == len(facts["gpus"])
    assert facts["gfx_targets"] == [target] and facts["marketing_names"] == [name]
    assert facts["unidentified_device_ids"] == []
    assert [gpu["pci_bdf"] for gpu in facts["gpus"]] == [f"0000:{bus}:00.0" for bus in buses]
    assert [gpu["numa_node"] for gpu in facts["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert {gpu["device_id"] for gpu in facts["gpus"]} == {device_id}
    assert {gpu["vram_gib_spec"] for gpu in facts["gpus"]} == {vram_gib}
    # Only the driver knows these: no guess.
    assert facts["vram_bytes_min"] is None and facts["vram_bytes_total"] is None
    assert {gpu["vram_bytes"] for gpu in facts["gpus"]} == {None}
    assert {gpu["render_node"] for gpu in facts["gpus"]} == {None} and facts["render_nodes"] == []
    assert facts["missing_render_nodes"] == [] and facts["cpu_node_count"] == 0


def test_pci_record_of_an_mi300x(tmp_path):
    pci = build_pci_bus("mi300x-8gpu", tmp_path / "sys")
    first = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd"), str(tmp_path), str(pci))["gpus"][0]
    assert first["vendor_id"] == "0x1002" and first["device_id"] == "0x74a1"
    assert first["pci_class"] == "0x120000" and first["subsystem_device"] == "0x74a1" and first["revision"] == "0x00"
    assert first["pci_bdf"] == "0000:0c:00.0" and first["location_id"] == 0x0C00 and first["domain"] == 0
    assert first["driver"] is None and first["gfx_target"] == "gfx942"
    assert first["node_id"] is None and first["gfx_target_version"] is None and first["compute_units"] is None


def test_kfd_wins_and_takes_the_pci_details(tmp_path):
    pci = build_pci_bus("mi300x-8gpu", tmp_path / "sys", driver_for_amd_gpus="amdgpu")
    dev = make_dev(tmp_path / "dev", range(128, 136))
    facts = amd_topology.collect_gpu_facts(str(FIXTURES / "mi300x-8gpu"), str(dev), str(pci))
    assert facts["source"] == "kfd" and facts["count"] == facts["pci_count"] == 8
    assert facts["vram_bytes_min"] == 196592 * 1024**2
    assert [gpu["node_id"] for gpu in facts["gpus"]] == list(range(2, 10))
    assert {gpu["driver"] for gpu in facts["gpus"]} == {"amdgpu"}
    assert {gpu["pci_class"] for gpu in facts["gpus"]} == {"0x120000"}
    assert {gpu["vram_gib_spec"] for gpu in facts["gpus"]} == {192}


def test_a_gpu_the_driver_did_not_bring_up_shows_on_the_pci_bus_only(tmp_path):
    pci = build_pci_bus("mi300x-8gpu", tmp_path / "sys", driver_for_amd_gpus="amdgpu")
    facts = amd_topology.collect_gpu_facts(str(FIXTURES / "mi300x-7gpu"), str(tmp_path), str(pci))
    assert facts["source"] == "kfd" and facts["count"] == 7 and facts["pci_count"] == 8
    on_the_bus = {f"0000:{bus}:00.0" for bus in MI300X_BUSES}
    assert on_the_bus - {gpu["pci_bdf"] for gpu in facts["gpus"]} == {"0000:5c:00.0"}


def test_kfd_without_gpus_does_not_hide_the_pci_bus(tmp_path):
    """A loaded driver that drives none of the GPUs (too old for them): the KFD topology has the CPU nodes only."""
    pci = build_pci_bus("mi355x-8gpu", tmp_path / "sys")
    dev = make_dev(tmp_path / "dev", [])
    facts = amd_topology.collect_gpu_facts(str(FIXTURES / "cpu-only"), str(dev), str(pci))
    assert facts["source"] == "pci" and facts["topology_present"] and facts["kfd_present"]
    assert facts["count"] == 8 and facts["cpu_node_count"] == 2 and facts["gfx_targets"] == ["gfx950"]


def test_the_pci_fallback_tells_gpus_from_everything_else(tmp_path):
    pci = build_pci_bus("mixed-vendors", tmp_path / "sys")
    facts = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd"), str(tmp_path), str(pci))
    assert [gpu["pci_bdf"] for gpu in facts["gpus"]] == ["0000:43:00.0", "0000:85:00.0", "0000:c5:00.0"]
    assert facts["count"] == facts["pci_count"] == 3
    assert facts["gfx_targets"] == ["gfx942"]
    assert facts["unidentified_device_ids"] == ["0x7448"]
    assert facts["marketing_names"] == ["Unknown AMD GPU (device 0x7448)", "AMD Instinct MI300X"]
    w7900, sriov_pf, mi300x = facts["gpus"]
    assert w7900["gfx_target"] is None and w7900["vram_gib_spec"] is None and w7900["pci_class"] == "0x030000"
    assert (sriov_pf["driver"], sriov_pf["numa_node"]) == ("gim", 1)
    assert mi300x["driver"] is None


def test_a_passed_through_vf_counts_in_a_guest(tmp_path):
    """Inside a VM the VF has no physfn link: it is the guest's GPU."""
    pci = build_pci_bus("mixed-vendors", tmp_path / "sys")
    (tmp_path / "sys" / "devices" / "pci0000:00" / "0000:85:02.0" / "physfn").unlink()
    gpus = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd"), str(tmp_path), str(pci))["gpus"]
    vf = next(gpu for gpu in gpus if gpu["pci_bdf"] == "0000:85:02.0")
    assert vf["marketing_name"] == "AMD Instinct MI300X VF" and vf["gfx_target"] == "gfx942"
    assert vf["vram_gib_spec"] is None and vf["driver"] == "vfio-pci" and len(gpus) == 4


def test_a_server_without_gpus(tmp_path):
    pci = build_pci_bus("no-gpu", tmp_path / "sys")
    facts = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd"), str(tmp_path), str(pci))
    assert facts["source"] == "none" and facts["count"] == facts["pci_count"] == 0
    assert facts["vram_bytes_min"] == 0 and facts["gfx_targets"] == [] and facts["unidentified_device_ids"] == []


def test_unreadable_functions_and_foreign_entries_are_skipped(tmp_path):
    pci = build_pci_bus("mi300x-8gpu", tmp_path / "sys")
    (tmp_path / "sys" / "devices" / "pci0000:00" / "0000:22:00.0" / "class").unlink()
    (pci / "not-a-pci-address").mkdir()
    gpus = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd"), str(tmp_path), str(pci))["gpus"]
    assert len(gpus) == 7 and "0000:22:00.0" not in {gpu["pci_bdf"] for gpu in gpus}


def test_no_pci_bus_at_all(tmp_path):
    facts = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd"), str(tmp_path), str(tmp_path / "no-sys"))
    assert facts["source"] == "none" and facts["pci_count"] == 0


def test_module_falls_back_to_the_pci_bus(run_module, tmp_path):
    pci = build_pci_bus("mi355x-8gpu", tmp_path / "sys")
    args = {"topology_root": str(tmp_path / "absent"), "dev_root": str(tmp_path / "dev"), "pci_root": str(pci)}
    result = run_module(args)
    facts = result["ansible_facts"]["amd_gpu"]
    assert result["ansible_facts"]["amd_gpu_source"] == "pci" and result["changed"] is False
    assert facts["count"] == 8 and facts["gfx_targets"] == ["gfx950"] and facts["vram_bytes_min"] is None
    assert facts == json.loads(json.dumps(facts)), "facts must be plain JSON types"
    assert run_module({**args, "_ansible_check_mode": True})["ansible_facts"] == result["ansible_facts"]


def _documented(spec):
    return set(spec.get("contains", {}))


def test_return_documents_every_key_of_both_sources(tmp_path):
    """RETURN must stay complete: every fact and GPU field the module returns is documented, and nothing more."""
    facts_spec = yaml.safe_load(amd_gpu_facts.RETURN)["ansible_facts"]
    gpu_spec = facts_spec["contains"]["amd_gpu"]["contains"]["gpus"]
    pci = build_pci_bus("mi300x-8gpu", tmp_path / "sys", driver_for_amd_gpus="amdgpu")
    from_kfd = amd_topology.collect_gpu_facts(str(FIXTURES / "mi300x-8gpu"), str(tmp_path), str(pci))
    from_pci = amd_topology.collect_gpu_facts(str(tmp_path / "no-kfd"), str(tmp_path), str(pci))
    assert _documented(facts_spec) == {"amd_gpu", "amd_gpu_source"}
    for facts in (from_kfd, from_pci):
        assert set(facts) == _documented(facts_spec["contains"]["amd_gpu"])
        assert set(facts["gpus"][0]) == _documented(gpu_spec)


def test_documented_options_match_the_defaults():
    options = yaml.safe_load(amd_gpu_facts.DOCUMENTATION)["options"]
    assert {name: option["default"] for name, option in options.items()} == {
        "topology_root": amd_topology.DEFAULT_TOPOLOGY_ROOT, "dev_root": amd_topology.DEFAULT_DEV_ROOT,
        "pci_root": amd_topology.DEFAULT_PCI_ROOT}
