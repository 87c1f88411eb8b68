"""ZeRO-3's squares are reduce-scattered asynchronously: at most IN_FLIGHT pending, landing in the order they
were started, so the partitions equal waiting on each one, bit for bit (a 2-rank gloo group in threads' place:
two processes, each its own rank)."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from e2wm.train.dist import free_port


class _Param:
    def __init__(self, numel: int, world: int):
        self.ds_tensor = torch.empty(-(-numel // world))


def _rank(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from e2wm.train.fisher import _SquareSum
        sizes = {"a": 7, "b": 12, "c": 5}      # 7 and 5 do not divide by 2: padded
        params = {n: _Param(k, world) for n, k in sizes.items()}
        g = torch.Generator().manual_seed(rank)
        feeds = [(n, torch.rand(sizes[n], generator=g) * 1e3 + torch.rand(sizes[n], generator=g) * 1e-4)
                 for _ in range(6) for n in sizes]
        acc = _SquareSum(params, partitioned=True, world=world, device=torch.device("cpu"), hooked={})
        most = 0
        for name, sq in feeds:
            acc.add(name, sq)
            most = max(most, len(acc._pending))
        acc.flush()
        ref = {n: torch.zeros_like(v) for n, v in acc.sums.items()}
        for name, sq in feeds:                  # the synchronous reference, written out here
            pad = ref[name].numel() * world - sq.numel()
            full = torch.cat([sq, sq.new_zeros(pad)])
            part = torch.empty_like(ref[name])
            dist.reduce_scatter_tensor(part, full, op=dist.ReduceOp.SUM)
            ref[name] += part
        out[rank] = (most, all(torch.equal(acc.sums[n], ref[n]) for n in ref), not acc._pending)
    finally:
        dist.destroy_process_group()


def test_async_reduce_scatters_equal_waiting_on_each_bit_for_bit():
    world = 2
    out = mp.Manager().dict()
    mp.spawn(_rank, args=(world, free_port(), out), nprocs=world, join=True)
    for rank in range(world):
        most, equal, drained = out[rank]
        assert most == 2            # two in flight, never more
        assert equal and drained
