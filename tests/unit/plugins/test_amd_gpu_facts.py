"""amd_gpu_facts and its module_utils against recorded-style KFD topologies (fixtures/topology/)."""

import importlib.util
import json
import pathlib
import shutil

import ansible.module_utils
import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

REPO = pathlib.Path(__file__).resolve().parents[3]
# Not a collection: ansible.cfg's module_utils path makes plugins/module_utils importable for a play; so here.
if str(REPO / "plugins" / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(REPO / "plugins" / "module_utils"))
from ansible.module_utils import amd_topology  # noqa: E402
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "topology"
GIB = 1024**3


def load_module():
    spec = importlib.util.spec_from_file_location("amd_gpu_facts", REPO / "plugins" / "modules" / "amd_gpu_facts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    module = load_module()

    def run(args):
        with patch_module_args(args), pytest.raises(ExitJson) as result:
            module.main()
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
    result = run_module({"topology_root": str(FIXTURES / "mi300x-8gpu"), "dev_root": str(dev)})
    facts = result["ansible_facts"]["amd_gpu"]
    assert result["changed"] is False
    assert facts["count"] == 8 and facts["gfx_targets"] == ["gfx942"]
    assert facts["marketing_names"] == ["AMD Instinct MI300X"]
    assert facts == json.loads(json.dumps(facts)), "facts must be plain JSON types"


def test_module_check_mode_gives_the_same_facts(run_module, tmp_path):
    dev = make_dev(tmp_path / "dev", range(128, 136))
    args = {"topology_root": str(FIXTURES / "mi355x-8gpu"), "dev_root": str(dev)}
    normal = run_module(args)
    checked = run_module({**args, "_ansible_check_mode": True})
    assert checked["changed"] is False
    assert checked["ansible_facts"] == normal["ansible_facts"]
    assert checked["ansible_facts"]["amd_gpu"]["gfx_targets"] == ["gfx950"]


def test_module_reports_a_missing_render_node(run_module, tmp_path):
    topology = FIXTURES / "mi300x-7gpu"
    dev = make_dev(tmp_path / "dev", [minor for minor in render_minors_of(topology) if minor != 134])
    facts = run_module({"topology_root": str(topology), "dev_root": str(dev)})["ansible_facts"]["amd_gpu"]
    assert facts["count"] == 7
    assert facts["missing_render_nodes"] == [str(dev / "dri" / "renderD134")]


def test_module_on_a_host_without_the_driver_does_not_fail(run_module, tmp_path):
    result = run_module({"topology_root": str(tmp_path / "absent"), "dev_root": str(tmp_path / "dev")})
    facts = result["ansible_facts"]["amd_gpu"]
    assert facts["count"] == 0 and facts["kfd_present"] is False and facts["topology_present"] is False


def test_module_fails_with_the_unreadable_file(run_module, tmp_path):
    topology = copy_fixture("mi325x-8gpu", tmp_path)
    bank = topology / "nodes" / "7" / "mem_banks" / "0" / "properties"
    bank.unlink()
    bank.mkdir()
    with pytest.raises(FailJson) as failure:
        run_module({"topology_root": str(topology), "dev_root": str(tmp_path)})
    assert "Cannot read the KFD topology" in failure.value.args[0]["msg"]
    assert "nodes/7/mem_banks/0/properties" in failure.value.args[0]["msg"]
