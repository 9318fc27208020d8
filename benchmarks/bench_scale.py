"""Beyond one machine: the ``embed`` runners and the train sweep, local vs Ray, on this machine.

(a) embed: images/s of ``embed_views`` on a cold cache with the local runner (DataLoader workers)
    and with the Ray Data runner (``RayEmbed``, a local cluster of this machine's CPUs), both end
    to end (Ray: with its actor start-up) and in steady state (rows between the first and the
    last chunk written, from the chunk files' times); the two caches must be byte-identical.
(b) sweep: wall time of the train node's fit jobs (``fit_methods``) run one after another,
    in local processes (``train.workers``) and as Ray tasks; the weights must be equal.
(c) Ray's overhead per task: empty tasks, submitted together and one at a time.
(d) a projection to N GPUs from the measured per-actor rate (model and assumptions in the json).
(e) ``--nodes N``: (a) and (b) on a multi-node cluster on this machine (``ray.cluster_utils``: a
    head without CPUs and N worker raylets of ``--cpus-per-node`` CPUs, one actor per CPU), with
    the batches' and tasks' nodes as the runners log them and the same projection; written as
    ``multi_node`` into the existing results (the single-machine figures stay).

    python benchmarks/bench_scale.py              # writes benchmarks/results/scale.{json,md}
    python benchmarks/bench_scale.py --nodes 2    # adds multi_node to them

Images and model as benchmarks/bench_embed.py (default EmojiShift, the default ``clip`` model,
random weights when its checkpoint is absent). Sweep: the default ``train`` block (methods,
grids, epochs) on the synthetic features of tests/methods/synthetic.py (the default data's
features need the default pretrain run first). One run each; the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.methods.synthetic

from bench_embed import WORK, find_images, machine  # noqa: E402

from croft_pipeline.clip.backend import encode_pixels, load_clip  # noqa: E402
from croft_pipeline.clip.embedding import EmbedSettings, embed_views  # noqa: E402
from croft_pipeline.clip.views import AUGMENT  # noqa: E402
from croft_pipeline.common.compute import torch_threads  # noqa: E402
from croft_pipeline.common.files import atomic_write_bytes  # noqa: E402
from croft_pipeline.config.loader import parameters  # noqa: E402
from croft_pipeline.data.images import load_rgb  # noqa: E402
from croft_pipeline.distributed.embed import RayEmbed  # noqa: E402
from croft_pipeline.pipelines.train import nodes  # noqa: E402
from tests.methods.synthetic import CLASSES, synthetic_tables  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGENET_ROWS = 1_281_167 * 11  # ImageNet-1k train: a center view and 10 augmented views each
ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")  # kernels forced, if any


def cpu_flags() -> list[str]:
    """The CPU's AVX2 / AVX512-BF16 flags (``lscpu | grep -o 'avx512_bf16\\|avx2' | sort -u``)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return sorted({flag for flag in ("avx2", "avx512_bf16") if f" {flag}" in text})


def chunk_times(cache: Path) -> list[float]:
    return sorted(p.stat().st_mtime for p in cache.rglob("chunk-*.safetensors"))


def timed_embed(loaded, images, recipe, views, cache, settings, runner=None) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    started = time.time()
    embed_views(loaded, images, recipe, views, cache, settings, runner)
    seconds = time.time() - started
    times, rows = chunk_times(cache), len(images) * views
    per_chunk = rows / len(times)
    steady = (len(times) - 1) * per_chunk / max(times[-1] - times[0], 1e-9)
    return {
        "seconds": round(seconds, 2),
        "images_per_s": round(rows / seconds, 1),  # rows (views) per second, end to end
        "steady_images_per_s": round(steady, 1),
        "seconds_to_first_chunk": round(times[0] - started, 2),
    }


def stage_rates(loaded, images, recipe, batch_size: int) -> dict:
    """Rows/s of decode + view transform alone, and of encode alone, on one thread."""
    sample = images[: 4 * batch_size]
    with torch_threads(1):
        started = time.perf_counter()
        pixels = torch.stack([recipe.pixels(load_rgb(r.path), r.sha256, 0) for r in sample])
        decode = len(sample) / (time.perf_counter() - started)
        with torch.inference_mode():
            started = time.perf_counter()
            for i in range(0, len(pixels), batch_size):
                encode_pixels(loaded, recipe.normalize(pixels[i : i + batch_size]))
            encode = len(sample) / (time.perf_counter() - started)
    return {"decode_per_cpu": round(decode, 1), "encode_per_thread": round(encode, 1)}


def write_rate(cache: Path, dim: int, rows: int = 512, chunks: int = 20) -> float:
    """Rows/s the driver writes as cache chunks (safetensors, fsync, rename)."""
    from croft_pipeline.clip.cache import FeatureCache

    shutil.rmtree(cache, ignore_errors=True)
    target, features = FeatureCache(cache), torch.randn(rows, dim)
    started = time.perf_counter()
    for n in range(chunks):
        target.write_chunk([f"{n}:{i}" for i in range(rows)], features)
    shutil.rmtree(cache, ignore_errors=True)
    return round(rows * chunks / (time.perf_counter() - started), 1)


def sweep(train: dict, seeds: list[int], local_processes: bool = True) -> dict:
    tables = synthetic_tables(tuple(seeds))
    runs, weights = {}, {}
    labels = {
        "sequential": {**train, "workers": 1, "runner": "local"},
        "local_processes": {**train, "workers": os.cpu_count(), "runner": "local"},
        "ray": {**train, "runner": "ray"},
    }
    if not local_processes:
        del labels["local_processes"]
    for label, params in labels.items():
        started = time.perf_counter()
        weights[label], *_ = nodes.fit_methods(*tables, CLASSES, params, seeds)
        runs[label] = round(time.perf_counter() - started, 2)
    first = weights["sequential"]
    equal = all(
        all(torch.equal(other[k][n], first[k][n]) for k in first for n in first[k])
        for other in weights.values()
    )
    jobs = len(train["methods"]) * len(seeds)
    return {"seconds": runs, "jobs": jobs, "weights_equal_to_sequential": equal}


def task_overhead(ray, n: int = 200) -> dict:
    @ray.remote(num_cpus=1)
    def empty():
        return None

    ray.get([empty.remote() for _ in range(20)])  # warm workers
    started = time.perf_counter()
    ray.get([empty.remote() for _ in range(n)])
    batched = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(50):
        ray.get(empty.remote())
    serial = (time.perf_counter() - started) / 50
    return {
        "ms_per_task_submitted_together": round(1e3 * batched, 2),
        "ms_per_task_one_at_a_time": round(1e3 * serial, 2),
    }


def projection(per_actor: float, startup: float, write: float, decode: float) -> dict:
    model = (
        "seconds(N) = startup + rows / (N * r); r = one actor's steady rows/s. Assumes: actors "
        "independent (no shared bottleneck), each fed by enough decode CPUs "
        "(r / decode_per_cpu CPUs per actor), and the driver's chunk writes keeping up "
        "(N * r <= driver_write_rows_per_s). r here is a 1-CPU actor's rate on this machine: "
        "for GPU actors substitute one GPU's measured rate (e.g. benchmarks/bench_gpu_vit.py); "
        "the formula and the limits are the same."
    )
    rows = {}
    for n in (1, 2, 4, 8, 16, 32):
        seconds = startup + IMAGENET_ROWS / (n * per_actor)
        rows[str(n)] = {
            "images_per_s": round(n * per_actor, 1),
            "imagenet_hours": round(seconds / 3600, 2),
        }
    return {
        "model": model,
        "per_actor_images_per_s": per_actor,
        "startup_seconds": startup,
        "decode_cpus_per_actor": round(per_actor / decode, 2),
        "driver_write_rows_per_s": write,
        "max_actors_before_driver_bound": int(write // per_actor),
        "imagenet_rows": IMAGENET_ROWS,
        "by_actors": rows,
    }


class Placements(logging.Handler):
    """The node counts the runners log (``distributed.log_placement``), by runner."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.nodes: dict[str, list[int]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "nodes"):
            self.nodes[record.args[0]] = sorted(record.nodes.values(), reverse=True)


def multi_node(args, loaded, images, recipe, views, settings, train, seeds) -> dict:
    """(e): the embed and the sweep on ``args.nodes`` worker raylets, one actor per CPU."""
    import ray
    from ray.cluster_utils import Cluster

    placements = Placements()
    logging.getLogger("croft_pipeline.distributed").addHandler(placements)
    logging.getLogger("croft_pipeline.distributed").setLevel(logging.INFO)
    actors = args.nodes * args.cpus_per_node
    on_ray = RayEmbed(actors=actors, cpus_per_actor=1, decode_cpus=1)  # fused on CPUs
    with torch_threads(1):  # as each actor
        local = timed_embed(loaded, images, recipe, views, WORK / "scale_local", settings)
    # a temp dir of its own: Ray notes a started cluster's address there, where another
    # process's plain ray.init() would find it (the default /tmp/ray) and join it
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    started = time.perf_counter()
    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=0, include_dashboard=False)
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=args.cpus_per_node, include_dashboard=False)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        cluster_seconds = time.perf_counter() - started
        remote = timed_embed(loaded, images, recipe, views, WORK / "scale_ray", settings, on_ray)
        swept = sweep(train, seeds, local_processes=False)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(os.environ.pop("RAY_TMPDIR"), ignore_errors=True)
    identical = _same_chunks(WORK / "scale_local", WORK / "scale_ray")
    stages = stage_rates(loaded, images, recipe, settings.batch_size)
    write = write_rate(WORK / "scale_write", loaded.embed_dim)
    per_actor = round(remote["steady_images_per_s"] / actors, 1)
    return {
        "topology": f"{args.nodes} nodes x {args.cpus_per_node} CPU (+ a head without CPUs)",
        "nodes": args.nodes,
        "cpus_per_node": args.cpus_per_node,
        "cluster_start_seconds": round(cluster_seconds, 2),
        "embed": {
            "rows": len(images) * views,
            "images": len(images),
            "local_one_thread": local,
            "ray": {**remote, "actors": actors, "cpus_per_actor": 1, "torch_threads_per_actor": 1},
            "per_actor_steady_images_per_s": per_actor,
            "ray_over_local_seconds": round(remote["seconds"] / local["seconds"], 2),
            "caches_byte_identical": identical,
            "batches_per_node": placements.nodes.get("embed.runner"),
        },
        "sweep": {**swept, "tasks_per_node": placements.nodes.get("train.runner")},
        "projection": projection(
            per_actor, remote["seconds_to_first_chunk"], write, stages["decode_per_cpu"]
        ),
    }


def _same_chunks(first: Path, second: Path) -> bool:
    return {p.name: p.read_bytes() for p in first.rglob("chunk-*")} == {
        p.name: p.read_bytes() for p in second.rglob("chunk-*")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="use at most this many images")
    parser.add_argument("--views", type=int, default=None, help="default: embed.n_views")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=0, help="(e): worker nodes; 0: (a)-(d)")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scale")
    args = parser.parse_args()

    import ray

    resolved = parameters(ROOT)
    clip, embed, train = resolved["clip"], resolved["embed"], resolved["train"]
    views = args.views or int(embed["n_views"])
    settings = EmbedSettings(
        int(embed["batch_size"]), int(embed["chunk_rows"]), int(embed["num_workers"]), False
    )
    checkpoint = ROOT / clip["pretrained"]
    pretrained = str(checkpoint) if checkpoint.is_file() else None
    info = machine()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    loaded = load_clip(clip["model_name"], pretrained, device="cpu", precision=clip["precision"])
    images = find_images(ROOT / "data/01_raw/emojishift", args.limit)
    recipe = loaded.view_recipe(AUGMENT)
    if args.nodes:
        result = json.loads(args.out.with_suffix(".json").read_text())
        on_nodes = multi_node(
            args, loaded, images, recipe, views, settings, train, list(resolved["seeds"])
        )
        result["multi_node"] = {
            **on_nodes,
            "machine": {**info, "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
            "cpu_flags": cpu_flags(),
            "forced_kernels": {k: os.environ[k] for k in ISA_VARIABLES if k in os.environ},
            **provenance(started_at),
        }
        for folder in ("scale_local", "scale_ray"):
            shutil.rmtree(WORK / folder, ignore_errors=True)
        write_results(result, args.out)
        print(json.dumps(result["multi_node"], indent=2))
        return
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    on_ray = RayEmbed(actors=args.actors, cpus_per_actor=1, decode_cpus=1)  # fused on CPUs
    with torch_threads(clip.get("num_threads")):
        threads = torch.get_num_threads()
        local = timed_embed(loaded, images, recipe, views, WORK / "scale_local", settings)
    remote = timed_embed(loaded, images, recipe, views, WORK / "scale_ray", settings, on_ray)
    identical = _same_chunks(WORK / "scale_local", WORK / "scale_ray")
    stages = stage_rates(loaded, images, recipe, settings.batch_size)
    write = write_rate(WORK / "scale_write", loaded.embed_dim)
    overhead = task_overhead(ray)
    swept = sweep(train, list(resolved["seeds"]))
    ray.shutdown()
    per_actor = round(remote["steady_images_per_s"] / args.actors, 1)
    startup = remote["seconds_to_first_chunk"]
    result = {
        "embed": {
            "rows": len(images) * views,
            "images": len(images),
            "views": f"{views} augmented views each",
            "local": {**local, "num_workers": settings.num_workers, "torch_threads": threads},
            "ray": {
                **remote,
                "actors": args.actors,
                "cpus_per_actor": 1,
                "torch_threads_per_actor": 1,
                "decode": "fused into the actors (decode_cpus == cpus_per_actor)",
            },
            "ray_over_local_seconds": round(remote["seconds"] / local["seconds"], 2),
            "caches_byte_identical": identical,
            "single_thread_rates": stages,
            "model_name": clip["model_name"],
            "weights": "trained checkpoint" if pretrained else "random (checkpoint absent)",
            "batch_size": settings.batch_size,
            "chunk_rows": settings.chunk_rows,
        },
        "sweep": {
            **swept,
            "grid": "conf/base train (default methods, grids, epochs)",
            "data": "tests/methods/synthetic.py synthetic_tables (12-dim features)",
            "seeds": resolved["seeds"],
        },
        "ray_task_overhead": overhead,
        "projection": projection(per_actor, startup, write, stages["decode_per_cpu"]),
        "ray_version": ray.__version__,
        "machine": {**info, "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        **provenance(started_at),
    }
    for folder in ("scale_local", "scale_ray"):
        shutil.rmtree(WORK / folder, ignore_errors=True)
    write_results(result, args.out)
    print(json.dumps(result, indent=2))


def provenance(started_at: str) -> dict:
    """When, at which commit and with which command a result was measured."""
    return {
        "date": started_at,
        "git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "command": " ".join(
            ["python", *map(shlex.quote, [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])]
        ),
    }


def write_results(result: dict, out: Path) -> None:
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(result, indent=2) + "\n").encode())
    e, s, m, p = result["embed"], result["sweep"], result["machine"], result["projection"]
    o = result["ray_task_overhead"]
    lines = [
        "# Scale-out benchmark: local vs Ray on one machine",
        "",
        f"Command: `{result['command']}` at {result['date']}, commit {result['git_commit'][:10]}, "
        f"Ray {result['ray_version']}.  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; 1-min load average "
        f"{m['load_average_1min_at_start']} at start, {m['load_average_1min_at_end']} at end "
        "(the machine is shared).  ",
        f"Embed: {e['model_name']} ({e['weights']}), {e['images']} EmojiShift images x "
        f"{e['views']} = {e['rows']} rows, batch {e['batch_size']}, chunks of {e['chunk_rows']}.",
        "",
        "| embed runner | seconds | rows/s end to end | rows/s steady | s to first chunk |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {name} | {r['seconds']} | {r['images_per_s']} | {r['steady_images_per_s']} | "
            f"{r['seconds_to_first_chunk']} |"
            for name, r in (("local", e["local"]), (f"ray ({e['ray']['actors']} actors)", e["ray"]))
        ),
        "",
        f"Ray / local wall time: **{e['ray_over_local_seconds']}x**; caches byte-identical: "
        f"{e['caches_byte_identical']}.",
        "",
        f"Sweep ({s['jobs']} fit jobs; {s['grid']}; {s['data']}): "
        + ", ".join(f"{k} {v} s" for k, v in s["seconds"].items())
        + f"; weights equal to sequential: {s['weights_equal_to_sequential']}.",
        "",
        f"Ray task overhead: {o['ms_per_task_submitted_together']} ms per empty task submitted "
        f"together, {o['ms_per_task_one_at_a_time']} ms one at a time.",
        "",
        f"Projection ({p['model']})",
        "",
        "| actors (GPUs) | rows/s | ImageNet-1k, 11 views: hours |",
        "| --- | --- | --- |",
        *(
            f"| {n} | {r['images_per_s']} | {r['imagenet_hours']} |"
            for n, r in p["by_actors"].items()
        ),
        "",
        f"Per actor {p['per_actor_images_per_s']} rows/s; decode needs {p['decode_cpus_per_actor']} "
        f"CPUs per actor; the driver writes {p['driver_write_rows_per_s']} rows/s, so about "
        f"{p['max_actors_before_driver_bound']} such actors before it is the bottleneck.",
        "",
        *(multi_node_lines(result["multi_node"]) if "multi_node" in result else []),
    ]
    atomic_write_bytes(out.with_suffix(".md"), "\n".join(lines).encode())


def multi_node_lines(n: dict) -> list[str]:
    """The markdown of (e)."""
    e, s, p, m = n["embed"], n["sweep"], n["projection"], n["machine"]
    kernels = " ".join(f"{k}={v}" for k, v in n["forced_kernels"].items()) or "none forced"
    return [
        f"## Multi-node: {n['topology']}",
        "",
        f"Command: `{n['command']}` at {n['date']}, commit {n['git_commit'][:10]}; CPU flags "
        f"{', '.join(n['cpu_flags'])}, kernels: {kernels}; 1-min load average "
        f"{m['load_average_1min_at_start']} at start, {m['load_average_1min_at_end']} at end. "
        f"The raylets started in {n['cluster_start_seconds']} s.",
        "",
        "| embed | seconds | rows/s end to end | rows/s steady | s to first chunk |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {name} | {r['seconds']} | {r['images_per_s']} | {r['steady_images_per_s']} | "
            f"{r['seconds_to_first_chunk']} |"
            for name, r in (
                ("local, 1 thread", e["local_one_thread"]),
                (f"ray, {e['ray']['actors']} actors on {n['nodes']} nodes", e["ray"]),
            )
        ),
        "",
        f"{e['rows']} rows ({e['images']} images); per actor {e['per_actor_steady_images_per_s']} "
        f"rows/s steady; batches per node {e['batches_per_node']}; caches byte-identical: "
        f"{e['caches_byte_identical']}. Sweep ({s['jobs']} fit jobs): "
        + ", ".join(f"{k} {v} s" for k, v in s["seconds"].items())
        + f"; tasks per node {s['tasks_per_node']}; weights equal to sequential: "
        f"{s['weights_equal_to_sequential']}.",
        "",
        "Projection (same rule, this per-actor rate and start-up): "
        + ", ".join(f"{k} actors {r['imagenet_hours']} h" for k, r in p["by_actors"].items())
        + " for ImageNet-1k x 11 views.",
        "",
    ]


if __name__ == "__main__":
    main()
