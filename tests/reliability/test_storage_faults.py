"""Storage faults through the real CLI: each a clear one-line error or a clean recovery, never a half-registered
model. Disk full during a stage (run folders on a tiny tmpfs, then made larger and resumed), a read-only store (a
read-only bind mount), a corrupted page of mlflow.db, a truncated model package. The mounts need root (or
CAP_SYS_ADMIN); where mounting is refused, those two tests are skipped saying so. (A flipped byte or a truncated
checkpoint: tests/unit/engine/test_checkpoint.py, on real checkpoint files.)"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.conftest import run_cli, run_cli_json
from tests.reliability.faults import assert_store_consistent, leftovers, mlflow_runs, run_meta

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def one_line(proc: subprocess.CompletedProcess, *names: str) -> str:
    shown = f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1, shown
    for name in names:
        assert name in errors[0], f"{name!r} not in {errors[0]!r}"
    return errors[0]


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory) -> None:
    probe = tmp_path_factory.mktemp("mount-probe")
    try:
        mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {exc}")
    subprocess.run(["umount", str(probe)], check=True)


@pytest.fixture(scope="module")
def done(tmp_path_factory, data_dir) -> dict:
    """One completed, registered run whose store the faults below damage (each restores what it broke)."""
    folder = tmp_path_factory.mktemp("storage")
    store = folder / "store"
    config = {"name": "bc", "task": "binary", "store": str(store),
              "data": {"path": str(data_dir / "bc.parquet"), "target": "diagnosis", "positive_class": "malignant"},
              "model": {"type": "xgboost", "params": {"n_estimators": 10, "max_depth": 3}},
              "training": {"early_stopping_rounds": None, "threads": 1}}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    code, doc = run_cli_json("run", str(path), "--run-id", "good", "--store", str(store))
    assert code == 0, doc
    return {"store": store, "config": path, "data": str(data_dir / "bc.parquet"), "folder": folder}


def test_a_corrupted_page_of_mlflow_db_is_one_line_naming_the_database_for_every_command(done, figures):
    db = done["store"] / "mlflow.db"
    backup = db.read_bytes()
    try:
        page = 4096
        damaged = bytearray(backup)
        for offset in range(page * 2, min(len(damaged), page * 12)):  # pages 3-12: tables and indexes, not the header
            damaged[offset] = 0xA5
        db.write_bytes(bytes(damaged))
        outcomes = []
        for args in (("run", str(done["config"]), "--store", str(done["store"])),
                     ("runs", "list", "--store", str(done["store"])),
                     ("models", "list", "--store", str(done["store"]))):
            line = one_line(run_cli(*args), "mlflow.db")
            outcomes.append(f"{args[0]} {args[1] if args[0] != 'run' else ''}".strip() + f": {line}")
        runs = sorted(p.name for p in (done["store"] / "runs").iterdir())
        assert runs == ["good"], f"a run folder was left behind: {runs}"
    finally:
        db.write_bytes(backup)
    figures["storage faults"] = {**figures.get("storage faults", {}), "corrupted mlflow.db page": outcomes}


@pytest.mark.extended
def test_a_truncated_model_package_is_refused_by_its_registered_checksum_even_with_a_forged_record(done, figures):
    from trainpipe.registry.client import Registry
    from trainpipe.store import Store
    from trainpipe.tracking.config import TrackingConfig

    registry = Registry(Store.locate(str(done["store"])), TrackingConfig())
    package, _ = registry.verified_path("bc/1")
    victim = max((p for p in package.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    saved = victim.read_bytes()
    out = done["folder"] / "scores.parquet"
    try:
        victim.write_bytes(saved[: len(saved) // 2])
        line = one_line(run_cli("predict", "models:/bc@champion", done["data"], "--out", str(out), "--store",
                                str(done["store"])), "bc/1", "sha256")
        assert not out.exists()
        # the run folder's own package, with its registered.json rewritten to match: the registry still decides
        run_package = done["store"] / "runs" / "good" / "register" / "model"
        run_victim = run_package / victim.relative_to(package)
        run_saved = run_victim.read_bytes()
        record_file = run_package.parent / "registered.json"
        record_saved = record_file.read_text()
        try:
            import json

            from trainpipe.registry.packaging import tree_sha256

            run_victim.write_bytes(run_saved[: len(run_saved) // 2])
            record = json.loads(record_saved)
            record["sha256"] = tree_sha256(run_package)  # forged: whoever edits the package can edit this file
            record_file.write_text(json.dumps(record))
            forged = one_line(run_cli("predict", "good", done["data"], "--out", str(out), "--store",
                                      str(done["store"])), "sha256")
            assert "bc/1" in forged and not out.exists()
        finally:
            run_victim.write_bytes(run_saved)
            record_file.write_text(record_saved)
    finally:
        victim.write_bytes(saved)
    assert run_cli("predict", "models:/bc@champion", done["data"], "--out", str(out), "--store",
                   str(done["store"])).returncode == 0
    figures["storage faults"] = {**figures.get("storage faults", {}), "truncated model package": [line, forged]}


def test_a_read_only_store_is_one_line_and_changes_nothing(done, can_mount, figures):
    store = done["store"]
    before = sorted(str(p) for p in store.rglob("*"))
    mount("--bind", str(store), str(store))
    try:
        mount("-o", "remount,bind,ro", str(store))
        outcomes = [one_line(run_cli("run", str(done["config"]), "--store", str(store)), str(store))]
        outcomes.append(one_line(run_cli("run", "--resume", "good", "--store", str(store))))
    finally:
        subprocess.run(["umount", str(store)], check=True)
    assert sorted(str(p) for p in store.rglob("*")) == before
    figures["storage faults"] = {**figures.get("storage faults", {}), "read-only store": outcomes}


def test_disk_full_during_a_stage_is_one_line_and_the_resume_completes_once_there_is_room(data_dir, tmp_path,
                                                                                        can_mount, figures):
    store, disk = tmp_path / "store", tmp_path / "small-disk"
    store.mkdir()
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk))
    try:
        (store / "runs").symlink_to(disk)  # run folders on a 96 KB disk; MLflow's database and artifacts beside it
        config = tmp_path / "pipeline.yaml"
        config.write_text(yaml.safe_dump({
            "name": "bc", "task": "binary", "store": str(store),
            "data": {"path": str(data_dir / "bc.parquet"), "target": "diagnosis", "positive_class": "malignant"},
            "model": {"type": "xgboost", "params": {"n_estimators": 30}}, "training": {"threads": 1}}))
        proc = run_cli("run", str(config), "--run-id", "full", "--store", str(store))
        line = one_line(proc, "no space left")
        meta = run_meta(store, "full")
        failed = [name for name, state in meta["stages"].items() if state["status"] == "failed"]
        assert meta["status"] in ("failed", "running") and not (store / "runs" / "full" / "register").exists()
        assert not [p for p in (store / "runs" / "full").iterdir() if p.name.endswith(".tmp")]
        mount("-o", "remount,size=64m", str(disk))  # room again
        code, doc = run_cli_json("run", "--resume", "full", "--store", str(store))
        assert code == 0 and doc["status"] == "completed", doc
        assert mlflow_runs(store, "full")[0].info.status == "FINISHED"
        assert not leftovers(store)
        assert_store_consistent(store)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    figures["storage faults"] = {**figures.get("storage faults", {}),
                                 "disk full": [line, (f"stage {failed[0]} failed" if failed else
                                                      "run.json could not be updated on the full disk (dead run)")
                                               + "; --resume completed once there was room"]}
