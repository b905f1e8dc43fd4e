"""Ops fvcore does not count: recorded, priced only by latency, following kept channels."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from budgetsearch.cost import OpLatency, layer_inventory
from budgetsearch.cost.ops import index_op_elements, trace_extra_ops, trace_ops
from budgetsearch.cost.profiles import DeviceProfile


def _profile(**ops: OpLatency) -> DeviceProfile:
    return DeviceProfile(name="t", description="", source="measured", ops=ops)


def test_shufflenet_ops_are_all_seen() -> None:
    model = torchvision.models.shufflenet_v2_x0_5()
    kinds = {op.kind for op in trace_extra_ops(model, torch.zeros(1, 3, 32, 32))}
    assert {"activation", "concat", "reshape", "pool"} <= kinds


def test_se_gating_is_a_binary_op_and_adds_no_flops() -> None:
    model = torchvision.models.mobilenet_v3_small()
    inv = layer_inventory(model, torch.zeros(1, 3, 32, 32))
    names = [op.name for op in inv.extra_ops if op.kind == "binary"]
    assert any("block.2" in n for n in names)  # the SE multiply of a block
    assert all(op.flops == 0 for op in inv.extra_ops if op.kind != "linear")


def test_relu_after_a_pruned_conv_is_priced_at_the_kept_width() -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    inv = layer_inventory(model, torch.zeros(1, 1, 10, 10))
    (relu,) = inv.extra_ops
    assert relu.source == "1" and relu.elements == 2 * 8 * 8 * 8
    act = _profile(activation=OpLatency(ms_per_mb=1.0, overhead_ms=0.5))
    full = inv.price(profile=act).latency_ms
    half = inv.price(profile=act, kept_channels={"0": (1, 4), "1": (4, 4), "3": (4, 4)}).latency_ms
    per_element = 4 * 1e-6
    assert full == pytest.approx(0.5 + relu.elements * per_element)
    assert half == pytest.approx(0.5 + relu.elements / 2 * per_element)
    gone = inv.price(profile=act, kept_channels={"0": (1, 0), "1": (0, 0), "3": (0, 4)})
    assert gone.latency_ms == pytest.approx(0.0)  # a removed layer's ReLU is gone too


def test_expected_latency_follows_extra_ops_differentiably() -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    inv = layer_inventory(model, torch.zeros(1, 1, 10, 10))
    act = _profile(activation=OpLatency(ms_per_mb=1.0, overhead_ms=0.5),
                   conv=OpLatency(ms_per_gflop=3.0))
    kept = torch.tensor(6.0, requires_grad=True)
    channels = {"0": (1.0, kept), "1": (kept, kept), "3": (kept, 4.0)}
    expected = inv.expected_cost("latency", kept_channels=channels, profile=act)
    priced = inv.price(kept_channels={"0": (1, 6), "1": (6, 6), "3": (6, 4)}, profile=act)
    assert float(expected) == pytest.approx(priced.latency_ms)
    expected.backward()
    assert kept.grad is not None and float(kept.grad) > 0


def test_weight_bytes_are_priced_apart_from_activation_bytes() -> None:
    inv = layer_inventory(nn.Linear(100, 50), torch.zeros(1, 100))
    weights_only = _profile(linear=OpLatency(ms_per_weight_mb=1.0))
    expected = (100 * 50 + 50) * 4 * 1e-6
    assert inv.price(profile=weights_only).latency_ms == pytest.approx(expected)


def test_datasheet_profiles_do_not_price_extra_ops() -> None:
    from budgetsearch.cost import load_profile

    inv = layer_inventory(torchvision.models.mobilenet_v2(), torch.zeros(1, 3, 32, 32))
    assert sum(inv.extra_latency_ms(load_profile("jetson")).values()) == 0.0


class _Gathers(nn.Module):
    """The gathers of a mixed-connectivity block: read 2 of 4 channels, scatter one back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        picked = x.index_select(1, torch.tensor([0, 2]))
        zeros = x.new_zeros(x.shape)
        return zeros.index_add(1, torch.tensor([1]), picked[:, :1])


def test_gathers_and_scatters_are_index_ops_with_their_elements() -> None:
    x = torch.zeros(1, 4, 5, 5)
    ops = trace_extra_ops(_Gathers(), x)
    assert [op.name.split(":")[1].split("#")[0] for op in ops if op.kind == "index"] == [
        "index_select", "new_zeros", "index_add"]
    # index_select reads 4 channels and writes 2; new_zeros writes 4, reads nothing;
    # index_add reads the 4-channel tensor and the 1-channel source, writes 4
    assert [op.elements for op in ops if op.kind == "index"] == [150, 100, 225]
    assert index_op_elements(_Gathers(), x) == [150, 100, 225]


def test_index_ops_are_priced_as_copies_by_a_profile_fitted_before_the_kind() -> None:
    concat = OpLatency(ms_per_mb=2.0, overhead_ms=0.01)
    old = _profile(concat=concat)
    assert old.extra_op_latency("index") == concat
    # oracle: Σ (γ · 4 bytes · elements + β)
    assert old.extra_ops_ms("index", [1000, 10]) == pytest.approx(
        2.0 * 1e-6 * 4 * 1010 + 2 * 0.01)
    own = _profile(concat=concat, index=OpLatency(ms_per_mb=1.0, overhead_ms=0.02))
    assert own.extra_ops_ms("index", [1000]) == pytest.approx(1e-6 * 4 * 1000 + 0.02)
    # a datasheet roofline names no extra op: the compiler fuses them, they cost nothing
    assert _profile(conv=OpLatency(ms_per_gflop=1.0)).extra_ops_ms("index", [1000]) == 0.0
    inv = layer_inventory(nn.Sequential(_Gathers()), torch.zeros(1, 4, 5, 5))
    assert inv.predict_latency_ms(own) == pytest.approx(own.extra_ops_ms("index",
                                                                         [150, 100, 225]))


class _PreActBlock(nn.Module):
    """conv-BN-ReLU into a conv, a residual add, then a pre-activation BN-ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))  # BN folds, ReLU fuses
        out = self.conv2(y) + x  # the add fuses into conv2
        out = torch.relu(out)  # fuses after the fused add
        gate = torch.sigmoid(out.mean((2, 3), keepdim=True))  # after a pool: not fused
        return torch.nn.functional.hardswish(self.bn2(out * gate))  # BN after a mul: stays


def test_what_a_compiler_fuses_is_marked() -> None:
    x = torch.zeros(1, 4, 6, 6)
    ops, folded = trace_ops(_PreActBlock(), x)
    assert folded == {"bn1"}
    fused = [(op.name.split(":")[1].split("#")[0], op.fused) for op in ops
             if op.kind in ("activation", "binary")]
    assert fused == [("relu", True), ("add", True), ("relu", True), ("sigmoid", False),
                     ("mul", False), ("hardswish", False)]
    inv = layer_inventory(_PreActBlock(), x)
    assert [r.name for r in inv.layers if r.folded] == ["bn1"]
    assert inv["bn1"].latency_kind == "fused_batchnorm" and inv["bn2"].latency_kind == "batchnorm"
    # priced with their own coefficients where the profile has them, as unfused otherwise
    unfused = _profile(activation=OpLatency(overhead_ms=1.0), binary=OpLatency(overhead_ms=1.0),
                       batchnorm=OpLatency(overhead_ms=1.0))
    compiled = _profile(activation=OpLatency(overhead_ms=1.0), binary=OpLatency(overhead_ms=1.0),
                        batchnorm=OpLatency(overhead_ms=1.0), fused_activation=OpLatency(),
                        fused_binary=OpLatency(), fused_batchnorm=OpLatency())
    extra_ops = sum(1 for op in inv.extra_ops if op.kind in ("activation", "binary"))
    assert inv.predict_latency_ms(unfused) == pytest.approx(extra_ops + 2)
    assert inv.predict_latency_ms(compiled) == pytest.approx(3 + 1)


@pytest.mark.parametrize(("pool", "size"), [
    (nn.MaxPool2d(3, 2, 1), 16), (nn.MaxPool2d(2), 16), (nn.MaxPool2d(3, 1, 1), 9),
    (nn.AvgPool2d(3, 2, 1), 15), (nn.AvgPool2d(2), 8),
])
def test_pool_modules_are_layers_whose_work_is_their_window_reads(pool: nn.Module,
                                                                   size: int) -> None:
    """fvcore counts no FLOPs for max or windowed average pools, yet each reads its window at
    every output: recorded (0 FLOPs, so totals still equal fvcore's) with input reads as
    F.unfold counts them, and priced by them."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), pool, nn.Conv2d(8, 4, 1))
    x = torch.randn(1, 3, size, size)
    inv = layer_inventory(model, x)
    record = inv["1"]
    assert (record.op, record.flops, record.in_channels, record.out_channels) == ("pool", 0, 8, 8)
    assert record.kind == ("maxpool" if isinstance(pool, nn.MaxPool2d) else "pool")
    k, s, p = pool.kernel_size, pool.stride, pool.padding
    reads = torch.nn.functional.unfold(model[0](x), k, padding=p, stride=s).numel()
    assert record.pool_taps == reads
    per_read = _profile(pool=OpLatency(ms_per_gflop=1e3), maxpool=OpLatency(ms_per_gflop=2e3))
    rate = 2e3 if record.kind == "maxpool" else 1e3
    assert inv.layer_latency_ms(per_read)["1"] == pytest.approx(rate * 1e-9 * reads)


def test_a_max_pool_is_priced_at_the_kept_width_of_the_conv_before_it() -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.MaxPool2d(3, 2, 1), nn.Conv2d(8, 4, 1))
    inv = layer_inventory(model, torch.zeros(1, 1, 12, 12))
    pool = _profile(maxpool=OpLatency(ms_per_gflop=1e3, ms_per_mb=1.0, overhead_ms=0.5))
    full = inv.layer_latency_ms(pool)["1"]
    half = inv.layer_latency_ms(pool, kept_channels={"0": (1, 4), "1": (4, 4),
                                                     "2": (4, 4)})["1"]
    assert half - 0.5 == pytest.approx((full - 0.5) / 2)


def test_a_profile_without_maxpool_prices_max_pools_as_pools() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2))
    inv = layer_inventory(model, torch.zeros(1, 1, 10, 10))
    old = _profile(pool=OpLatency(ms_per_mb=1.0, overhead_ms=0.25))
    assert inv.layer_latency_ms(old)["1"] == pytest.approx(
        0.25 + 1e-6 * 4 * (4 * 8 * 8 + 4 * 4 * 4))


def test_functional_pools_are_extra_ops_with_their_reads() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.max_pool2d(self.conv(x), 3, stride=1, padding=1)
            return torch.nn.functional.avg_pool2d(y, kernel_size=2).mean((2, 3))

    ops = {op.name.split(":")[1]: op for op in trace_extra_ops(Net(), torch.zeros(1, 3, 8, 8))}
    assert (ops["max_pool2d#0"].kind, ops["max_pool2d#0"].flops) == ("maxpool", 6 * 8 * 8 * 9)
    assert (ops["avg_pool2d#1"].kind, ops["avg_pool2d#1"].flops) == ("pool", 6 * 4 * 4 * 4)
    assert (ops["mean#2"].kind, ops["mean#2"].flops) == ("pool", 6 * 4 * 4)
    assert ops["max_pool2d#0"].source == "conv"


def test_torchvision_max_pools_are_priced() -> None:
    """GoogLeNet at 64×64 ran 3.3 of its 13.9 ms in max pools in eager (2026-12-02) while the
    inventory held none of them."""
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    inv = layer_inventory(model, torch.zeros(1, 3, 64, 64))
    pools = [r for r in inv if r.kind == "maxpool"]
    assert len(pools) == 13  # 4 between stages, one in each of 9 Inception branches
    assert all(r.pool_taps > 0 for r in pools)


class _TutorialNet(nn.Module):
    """PyTorch's CIFAR-10 tutorial network: one MaxPool2d module applied after both convs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.pool = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


@pytest.mark.parametrize("pruner", ["channel-magnitude", "bar"])
def test_a_pool_module_applied_twice_is_priced_over_both_calls_and_prunes(pruner: str) -> None:
    """Its two calls carry two channel counts: a fixed cost (both calls' reads), which pruning
    leaves alone, where one scalable record crashed both channel pruners."""
    import copy

    from budgetsearch.cost import Target
    from budgetsearch.pruners import build_pruner

    net, x = _TutorialNet().eval(), torch.randn(1, 3, 32, 32)
    inv = layer_inventory(net, x)
    pool = inv["pool"]
    assert (pool.kind, pool.out_channels, pool.calls) == ("maxpool", 0, 2)
    assert pool.pool_taps == (6 * 14 * 14 + 16 * 5 * 5) * 4
    target = Target("flops", fraction=0.5, text="50%").resolve(inv.total_flops)
    built = build_pruner(pruner, target=target)
    built.prepare(copy.deepcopy(net), x)
    assert built.pruned_configuration() is not None


def test_pools_no_forward_calls_cost_nothing_and_adaptive_windows_are_exact() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.unused = nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2)
            self.pool = nn.AdaptiveMaxPool2d(7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pool(self.conv(x))

    inv = layer_inventory(Net().eval(), torch.randn(1, 3, 10, 10))
    assert "unused" not in inv
    # 10 → 7 on an axis: windows [⌊7i/… ⌋, ⌈…⌉) of sizes 2,3,2,2,3,2,2 (16 reads per axis)
    assert inv["pool"].pool_taps == 8 * 16 * 16


def test_other_pools_and_reductions_are_priced_not_reshapes() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.lp, self.frac = nn.LPPool2d(2, 2), nn.FractionalMaxPool2d(2, output_size=5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return (self.lp(y).sum() + self.frac(y).sum() + torch.max(y, 2)[0].sum()
                    + torch.nn.functional.max_pool2d(y, (3,)).sum()
                    + torch.nn.functional.max_pool1d(y.flatten(2), 2, return_indices=True)[0].sum())

    inv = layer_inventory(Net().eval(), torch.randn(1, 3, 10, 10))
    assert (inv["lp"].kind, inv["lp"].pool_taps) == ("pool", 8 * 5 * 5 * 4)
    assert (inv["frac"].kind, inv["frac"].pool_taps) == ("maxpool", 8 * 5 * 5 * 4)
    ops = {op.name.split(":")[1].split("#")[0]: op for op in inv.extra_ops}
    assert (ops["max"].kind, ops["max"].flops) == ("maxpool", 8 * 10 * 10)
    assert (ops["max_pool2d"].kind, ops["max_pool2d"].flops) == ("maxpool", 8 * 3 * 3 * 9)
    assert ops["max_pool1d_with_indices"].kind == "maxpool"


class _Attention(nn.Module):
    """Token linears the way Swin and ViT call them: functional F.linear, q @ kᵀ, addmm."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(8, 24, bias=False), nn.Linear(8, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (1, 2, 7, 8) → 14 rows, as Swin's attention calls its qkv
        q, k, v = nn.functional.linear(x, self.qkv.weight).chunk(3, dim=-1)
        scores = q @ k.transpose(-2, -1)  # one 7×8×7 GEMM per batch entry: 7 rows
        out = scores.softmax(-1) @ v
        return torch.addmm(torch.zeros(8), out.reshape(-1, 8), self.proj.weight.t())  # 14 rows


def test_a_matmul_counts_the_rows_its_shared_operand_meets() -> None:
    """Oracle: a linear's rows are its output elements per output feature (every leading
    dimension shares the weights), a batched matmul's its output's second-to-last size;
    addmm's FLOPs take the shared size from its first matrix, not from the bias."""
    ops = [op for op in trace_extra_ops(_Attention(), torch.zeros(1, 2, 7, 8))
           if op.kind == "linear"]
    assert [op.rows for op in ops] == [14, 7, 7, 14]
    assert [op.flops for op in ops] == [14 * 24 * 8, 2 * 7 * 7 * 8, 2 * 7 * 8 * 7, 14 * 8 * 8]


class _Products(nn.Module):
    """Matmuls whose rows are known by hand: a head on one vector, a GEMV each way, a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.zeros(6, 8)  # not a parameter: a module with one prices itself

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = nn.functional.linear(x[:1], self.weight)  # (1, 8) → one row
        gemv = self.weight @ x[0]  # matrix · vector: a GEMV, 1
        batched_gemv = x[0] @ torch.zeros(4, 8, 3)  # vector · batch: four GEMVs, 1 each
        batch = nn.functional.linear(x, self.weight)  # (3, 8): the weights meet 3 rows
        return head.sum() + gemv.sum() + batched_gemv.sum() + batch.sum()


def test_a_matmul_with_a_vector_runs_one_row_and_a_batch_runs_its_rows() -> None:
    ops = [op for op in trace_extra_ops(_Products(), torch.zeros(3, 8)) if op.kind == "linear"]
    assert [op.rows for op in ops] == [1, 1, 1, 3]
    assert [op.flops for op in ops] == [6 * 8, 6 * 8, 4 * 3 * 8, 3 * 6 * 8]


class _Einsums(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.zeros(16, 32)
        tokens = torch.einsum("bnd,de->bne", x, weight)  # a linear over b × n rows
        scores = torch.einsum("bnd,bmd->bnm", x, x)  # attention: n rows, b GEMMs
        implicit = torch.einsum("ij,jk", x[0], x[0].T)  # output "ik": 10 rows
        batched = torch.einsum("...nd,...md->...nm", x, x[:1])  # broadcast batch: as scores
        gemv = torch.einsum("ij,j->i", x[0], x[0, 0])  # a matrix times a vector: 1 row
        turned = torch.einsum("oi,bi->bo", weight.T, x[0])  # the weights first: still 10 rows
        return (tokens.sum() + scores.sum() + implicit.sum() + batched.sum() + gemv.sum()
                + turned.sum())


def test_einsum_is_a_matmul_by_its_index_space() -> None:
    """Oracle: one multiply-add per point of the index space (the product of every letter's
    size), rows from the first operand's letters the second lacks (Before: a reshape, 0)."""
    ops = [op for op in trace_extra_ops(_Einsums(), torch.zeros(2, 10, 16))
           if op.kind == "linear"]
    assert [(op.flops, op.rows) for op in ops] == [
        (2 * 10 * 16 * 32, 20), (2 * 10 * 10 * 16, 10), (10 * 16 * 10, 10),
        (2 * 10 * 10 * 16, 10), (10 * 16, 1), (32 * 16 * 10, 10)]


class _Dot(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[0] @ x[1]) + (x @ x[0]).sum()  # a dot product, then a matrix · vector


def test_matmuls_with_vectors_are_counted_not_refused() -> None:
    """fvcore's own matmul count fails on a vector operand (IndexError from inside fvcore):
    the inventory counts output elements × the shared size instead (oracle: 8, then 3 × 8)."""
    inv = layer_inventory(_Dot(), torch.zeros(3, 8))
    assert inv.total_flops == 8 + 3 * 8


def test_multi_head_attention_is_priced_as_its_projections_and_attention() -> None:
    """nn.MultiheadAttention runs as one F.multi_head_attention_forward call the trace cannot
    see inside (it was priced as nothing): its packed E → 3E projection, its attention's two
    matmuls and its output projection are linear ops over the tokens; the projections' FLOPs
    are fvcore's count of the same call, whose record is priced through them, not twice."""
    tokens, embed = 10, 16
    layer = nn.TransformerEncoderLayer(embed, 2, dim_feedforward=32, batch_first=True)
    x = torch.zeros(1, tokens, embed)
    ops = [op for op in trace_extra_ops(layer, x) if "multi_head" in op.name]
    assert [(op.name.rsplit(".", 1)[1], op.flops, op.rows) for op in ops] == [
        ("in_proj", tokens * embed * 3 * embed, tokens),
        ("attention", tokens * tokens * 2 * embed, tokens),
        ("out_proj", tokens * embed * embed, tokens)]
    inv = layer_inventory(layer, x)
    assert inv["self_attn#linear"].flops == ops[0].flops + ops[2].flops
    gflop = 100.0
    profile = _profile(linear=OpLatency(ms_per_gflop=gflop), activation=OpLatency())
    attention_ms = sum(op.flops for op in ops) * gflop * 1e-9  # conv unpriced: rows cost 0
    layers_ms = sum(inv[n].flops for n in ("linear1", "linear2")) * gflop * 1e-9 / tokens
    assert inv.predict_latency_ms(profile) == pytest.approx(
        (attention_ms / tokens) + layers_ms)
    # cross-attention: separate projections over the query's and the memory's rows
    attention = nn.MultiheadAttention(embed, 4, kdim=8, vdim=4)
    memory_k, memory_v = torch.zeros(7, 1, 8), torch.zeros(7, 1, 4)

    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = attention

        def forward(self, query: torch.Tensor) -> torch.Tensor:
            return self.attention(query, memory_k, memory_v, need_weights=False)[0]

    cross = [(op.flops, op.rows) for op in trace_extra_ops(Cross(), torch.zeros(5, 1, embed))
             if op.kind == "linear"]
    assert cross == [(5 * 16 * 16, 5), (7 * 8 * 16, 7), (7 * 4 * 16, 7),
                     (5 * 7 * 2 * 16, 5), (5 * 16 * 16, 5)]


def test_a_registered_upsample_is_priced_once() -> None:
    """fvcore counts nn.Upsample's FLOPs (a record of its own) and the trace records the
    interpolate it calls: a profile that prices extra ops prices the call once, as a pool by its
    reads (was: both, the record at the profile's ``other`` price)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Upsample(scale_factor=2,
                                                                        mode="bilinear"))
    inv = layer_inventory(model, torch.zeros(1, 3, 16, 16))
    assert inv["1"].traced and inv["1"].flops > 0
    profile = _profile(other=OpLatency(ms_per_gflop=1000.0, overhead_ms=1.0),
                       pool=OpLatency(ms_per_gflop=10.0, overhead_ms=0.5),
                       activation=OpLatency())
    reads = 8 * 32 * 32 * 4  # output × bilinear's 4 taps
    assert inv.predict_latency_ms(profile) == pytest.approx(0.5 + reads * 10.0 * 1e-9)


def test_a_linear_over_rows_prices_one_row_as_a_head_and_the_rest_as_a_gemm() -> None:
    """Oracle: the first row at the linear's own price per FLOP (a head's GEMV), each further
    row at the dense conv's, plus its conv-area kind's where the profile names one; a head on one
    vector is priced as before; the functional linears of a forward follow the same rule; the
    differentiable expected cost agrees; and a pruned linear keeps its rows."""
    head_gflop, conv_gflop, area_gflop = 200.0, 30.0, 2.0
    profile = _profile(linear=OpLatency(ms_per_gflop=head_gflop, overhead_ms=0.01),
                       conv=OpLatency(ms_per_gflop=conv_gflop),
                       conv_area17_64=OpLatency(ms_per_gflop=area_gflop))
    layer = nn.Sequential(nn.Linear(16, 32))
    for rows, area in ((1, 0.0), (5, 0.0), (20, area_gflop)):
        inv = layer_inventory(layer, torch.zeros(1, rows, 16))
        one_row = 16 * 32 * 1e-9
        expected = 0.01 + one_row * (head_gflop + (conv_gflop + area) * (rows - 1))
        assert inv.predict_latency_ms(profile) == pytest.approx(expected)
        half = inv.price(profile=profile, kept_channels={"0": (8, 32)}).latency_ms
        assert half == pytest.approx(0.01 + (expected - 0.01) / 2)
        assert float(inv.expected_cost("latency", profile=profile)) == pytest.approx(expected)
    functional = _profile(linear=OpLatency(ms_per_gflop=head_gflop),
                          conv=OpLatency(ms_per_gflop=conv_gflop), activation=OpLatency())
    inv = layer_inventory(_Attention(), torch.zeros(1, 2, 7, 8))
    priced = inv.price(profile=functional).latency_ms
    flops_rows = [(14 * 24 * 8, 14), (2 * 7 * 7 * 8, 7), (2 * 7 * 8 * 7, 7), (14 * 8 * 8, 14)]
    assert priced == pytest.approx(sum(
        f * 1e-9 * (head_gflop + conv_gflop * (r - 1)) / r for f, r in flops_rows))


class _Resampling(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(x, scale_factor=2, mode="bilinear")  # 4 reads an output
        near = nn.Upsample(scale_factor=2)(x)  # nearest: 1
        grid = torch.zeros(1, 4, 4, 2)
        sampled = nn.functional.grid_sample(x, grid, align_corners=False)  # bilinear: 4
        return up.sum() + near.sum() + sampled.sum() + nn.functional.pixel_shuffle(x, 2).sum()


def test_resampling_attention_and_pixel_shuffle_are_priced_by_what_they_read() -> None:
    """Oracle: a resample reads its output × its mode's taps (nearest 1, bilinear 4) and is
    priced as a pool; a pixel shuffle copies (concat); scaled_dot_product_attention is its two
    matmuls, Tq × Tk × (d + d_v) per batch entry, over Tq rows. Before, all four were priced
    as reshapes (nothing)."""
    x = torch.zeros(1, 8, 6, 6)
    ops = [op for op in trace_extra_ops(_Resampling(), x)
           if op.name.split(":")[1].split("#")[0] in ("interpolate", "grid_sample",
                                                       "pixel_shuffle")]
    assert [(op.kind, op.flops) for op in ops] == [
        ("pool", 8 * 12 * 12 * 4), ("pool", 8 * 12 * 12), ("pool", 8 * 4 * 4 * 4),
        ("concat", 0)]
    assert ops[-1].elements == 2 * x.numel()
    q, k, v = torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 7, 4), torch.zeros(1, 2, 7, 3)

    class Attend(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(q, k, v)

    (attention,) = [op for op in trace_extra_ops(Attend(), q) if op.kind == "linear"]
    assert attention.flops == 2 * 5 * 7 * (4 + 3) and attention.rows == 5
    empty = torch.zeros(1, 2, 5, 0)

    class Empty(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(q, empty, empty)

    (attention,) = [op for op in trace_extra_ops(Empty(), empty) if op.kind == "linear"]
    assert attention.flops == 0  # heads of width 0 do no work (and divide nothing)


def test_a_recurrent_layer_is_named_as_not_priced() -> None:
    """fvcore counts no FLOPs for an LSTM and the latency model prices it as one call: the
    inventory says so (a warning naming the layer) rather than pricing it silently at ~0."""
    model = nn.Sequential(nn.LSTM(4, 8, batch_first=True))
    with pytest.warns(UserWarning, match=r"LSTM '0'.*FLOPs are not counted"):
        layer_inventory(model, torch.zeros(1, 5, 4))


def test_a_network_without_recurrent_layers_is_not_warned_about() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer_inventory(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), torch.zeros(1, 1, 8, 8))


def test_attention_flops_do_not_depend_on_the_grad_mode() -> None:
    """Under no_grad, or with frozen weights, nn.MultiheadAttention takes PyTorch's fast path
    (aten::_native_multi_head_attention), which fvcore does not count: a transformer's FLOPs
    fell by its projections (a FLOPs budget then priced it cheap). Oracle: the projections'
    linear count, tokens × embedding × (3 + 1) × embedding, in every mode."""
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True).eval()
    x = torch.zeros(1, 10, 16)
    counts = [layer_inventory(layer, x)]
    with torch.no_grad():
        counts.append(layer_inventory(layer, x))
        for p in layer.parameters():
            p.requires_grad_(False)
        counts.append(layer_inventory(layer, x))
    assert [inv["self_attn#linear"].flops for inv in counts] == [10 * 16 * 4 * 16] * 3
    assert len({inv.total_flops for inv in counts}) == 1


class _FunctionalConv(nn.Module):
    """A hand-written conv: its own weight, F.conv2d (weight standardisation is written so)."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, 3, 3))
        self.stride, self.groups = stride, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight, None, self.stride, 1, 1, self.groups)


class _FunctionalLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(32, 16)), nn.Parameter(torch.zeros(32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, weight=self.weight, bias=self.bias)


class _TwoConvs(_FunctionalConv):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(super().forward(x))


@pytest.mark.parametrize("profile_name", ["cpu-2core-x86", "cpu-2core-x86-ort", "jetson-nano"])
def test_a_custom_module_calling_f_conv2d_is_priced_as_its_conv(profile_name: str) -> None:
    """Oracle: the same network built of nn.Conv2d / nn.Linear. A custom module that owns its
    weight and calls F.conv2d or F.linear was one call of an unknown kind (a stack of 64→64
    3×3 convs priced at 8% of its time); it is now the conv or linear it runs, with its
    channels, stride, groups and rows."""
    from budgetsearch.cost import load_profile

    profile = load_profile(profile_name, check=False)
    custom = nn.Sequential(_FunctionalConv(8, 16, 2, 2), nn.BatchNorm2d(16), nn.ReLU(),
                           _FunctionalConv(16, 16, 1, 1))
    twin = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1, groups=2, bias=False), nn.BatchNorm2d(16),
                         nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1, bias=False))
    x = torch.zeros(1, 8, 12, 12)
    mine, theirs = layer_inventory(custom, x), layer_inventory(twin, x)
    assert [(r.op, r.kind, r.in_channels, r.out_channels, r.stride, r.groups, r.params)
            for r in mine] == [(r.op, r.kind, r.in_channels, r.out_channels, r.stride, r.groups,
                                r.params) for r in theirs]
    assert mine.predict_latency_ms(profile) == pytest.approx(theirs.predict_latency_ms(profile))
    tokens = torch.zeros(1, 7, 16)
    assert layer_inventory(nn.Sequential(_FunctionalLinear()), tokens).predict_latency_ms(
        profile) == pytest.approx(layer_inventory(nn.Sequential(nn.Linear(16, 32)),
                                                  tokens).predict_latency_ms(profile))
    twice = layer_inventory(nn.Sequential(_TwoConvs(8, 8, 1, 1)), x)  # not one conv: as before
    assert twice["0"].op == "_twoconvs"


class _RootConvs(nn.Module):
    """Convs a container runs with F.conv2d on weights it owns (one strided, one transposed)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.randn(16, 8, 3, 3))
        self.up = nn.Parameter(torch.randn(16, 4, 2, 2))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.conv2d(x, self.down, stride=2, padding=1).relu()
        x = nn.functional.conv_transpose2d(x, self.up, stride=2)
        return self.head(x.mean((2, 3)))


def test_functional_convs_of_a_container_are_priced_as_convs() -> None:
    """Oracle: the nn.Conv2d / nn.ConvTranspose2d twin, priced by a profile of FLOPs and calls.
    A container's F.conv2d was a functional record priced through the extra-op trace, which
    named it a reshape: nothing."""
    twin = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.ReLU(),
                         nn.ConvTranspose2d(16, 4, 2, 2, bias=False))
    x = torch.zeros(1, 8, 12, 12)
    mine = [r for r in layer_inventory(_RootConvs(), x) if r.op == "conv"]
    theirs = list(layer_inventory(twin, x))[:2]
    fields = ("in_channels", "out_channels", "kernel_size", "stride", "groups", "transposed",
              "flops", "output_hw", "input_elements", "output_elements")
    assert [[getattr(r, f) for f in fields] for r in mine] == \
        [[getattr(r, f) for f in fields] for r in theirs]
    profile = _profile(conv=OpLatency(ms_per_gflop=50.0, overhead_ms=0.02), activation=OpLatency(),
                       linear=OpLatency())
    priced = layer_inventory(_RootConvs(), x).predict_latency_ms(profile)
    assert priced == pytest.approx(2 * 0.02 + sum(r.flops for r in theirs) * 50.0 * 1e-9)


class _BatchNormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d: a BatchNorm2d holding its activation as a child."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


@pytest.mark.parametrize("profile_name", ["cpu-2core-x86", "cpu-2core-x86-ort", "jetson-nano"])
def test_a_batchnorm_holding_its_activation_is_a_batchnorm(profile_name: str) -> None:
    """Oracle: conv, BatchNorm2d, ReLU as three modules. A layer class with children was a
    container: its BatchNorm a functional record, priced at nothing by a profile of extra ops,
    and never folded into the conv before it."""
    from budgetsearch.cost import load_profile

    profile = load_profile(profile_name, check=False)
    x = torch.zeros(1, 4, 10, 10)
    mine = layer_inventory(nn.Sequential(nn.Conv2d(4, 8, 3), _BatchNormAct(8)), x)
    twin = layer_inventory(nn.Sequential(nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8), nn.ReLU()), x)
    assert [(r.kind, r.out_channels, r.folded, r.params) for r in mine] == \
        [(r.kind, r.out_channels, r.folded, r.params) for r in twin]
    assert mine.predict_latency_ms(profile) == pytest.approx(twin.predict_latency_ms(profile))


class _StdConv(nn.Conv2d):
    """timm's StdConv2d: a Conv2d whose forward standardises its weights on every call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = nn.functional.batch_norm(self.weight.reshape(1, self.out_channels, -1), None,
                                          None, training=True, momentum=0.0)
        return self._conv_forward(x, weight.reshape_as(self.weight), self.bias)


class _LayerScale(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def test_calls_inside_a_module_with_its_own_forward_are_priced() -> None:
    """A conv subclass's weight standardisation and a LayerScale's multiply ran inside modules
    the trace took whole (priced as a plain conv; as one call of kind 'other'). Their calls are
    traced now, but for the conv the record prices; what is computed from weights alone is
    marked constant: eager runs it every call, onnxruntime folds it at load (priced 0)."""
    from budgetsearch.cost import load_profile

    x = torch.zeros(1, 8, 10, 10)
    std = layer_inventory(nn.Sequential(_StdConv(8, 16, 3), _LayerScale(16)), x)
    plain = layer_inventory(nn.Sequential(nn.Conv2d(8, 16, 3)), x)
    ops = {op.name.split(":")[1].split("#")[0]: op for op in std.extra_ops
           if op.kind != "reshape"}
    assert set(ops) == {"batch_norm", "mul"}
    assert ops["batch_norm"].kind == "batchnorm" and ops["batch_norm"].constant
    assert ops["batch_norm"].elements == 2 * 16 * 8 * 9
    assert ops["mul"].kind == "binary" and not ops["mul"].constant
    assert std["0"].kind == "conv" and std["1"].traced
    eager = load_profile("cpu-2core-x86", check=False)
    ort = load_profile("cpu-2core-x86-ort", check=False)
    extra = std.extra_latency_ms(eager)
    assert std.predict_latency_ms(eager) == pytest.approx(
        plain.predict_latency_ms(eager) + sum(extra.values()))
    assert extra[ops["batch_norm"].name] > 0
    assert std.extra_latency_ms(ort)[ops["batch_norm"].name] == 0.0


class Conv(nn.Module):  # a user's class whose name is a layer op's
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 4, 3, 3))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(nn.functional.conv2d(x, self.weight))


class _Blur(nn.Module):
    """No parameters: a conv on a buffer (timm's BlurPool2d)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", torch.ones(4, 1, 3, 3) / 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.kernel, padding=1, groups=4)


class _MatmulLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t() + self.bias


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(64, 256)), nn.Parameter(torch.zeros(64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t() + self.bias


class _IntoBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        buffer = torch.zeros(y.shape)
        buffer[:] = y  # the input reaches what follows through a write, not a result
        return nn.functional.relu(self.conv2(buffer))


def test_the_reviews_user_networks_price_as_their_twins() -> None:
    """Found by the 2026-12-04 review: each priced as the network of torch's own layers it is
    (or at least not at nothing, and without crashing)."""
    from budgetsearch.cost import load_profile

    eager = load_profile("cpu-2core-x86", check=False)
    x = torch.zeros(1, 4, 10, 10)
    named = layer_inventory(nn.Sequential(Conv()), x)  # raised AttributeError
    assert [r.kind for r in named if r.op == "conv"] == ["conv"]
    blur = layer_inventory(nn.Sequential(_Blur()), x)  # was priced at 0
    assert blur["0"].kind == "dwconv" and blur.predict_latency_ms(eager) > 0.001
    tokens = torch.zeros(1, 256)
    twin = layer_inventory(nn.Sequential(nn.Linear(256, 64)), tokens).predict_latency_ms(eager)
    mine = layer_inventory(nn.Sequential(_MatmulLinear(256, 64)), tokens)  # was twice
    assert not any(op.kind == "linear" for op in mine.extra_ops)  # the record prices it
    adds = sum(mine.extra_latency_ms(eager).values())  # its bias add is a call of its own
    assert mine.predict_latency_ms(eager) == pytest.approx(twin + adds)
    head = layer_inventory(nn.Sequential(_Head()), tokens)
    matmul = {op.name: op for op in head.extra_ops}
    priced = {k: v for k, v in head.extra_latency_ms(eager).items() if matmul[k].kind == "linear"}
    assert sum(priced.values()) == pytest.approx(twin, rel=0.5)  # its weights were priced at 0
    written = [op for op in trace_extra_ops(_IntoBuffer(), x) if op.kind == "activation"]
    assert written and not any(op.constant for op in written)


def test_a_pruned_batchnorm_holding_its_activation_prices_the_activation_at_its_width() -> None:
    from budgetsearch.cost import load_profile

    eager = load_profile("cpu-2core-x86", check=False)
    x = torch.zeros(1, 4, 10, 10)
    inv = layer_inventory(nn.Sequential(nn.Conv2d(4, 64, 3), _BatchNormAct(64)), x)
    (act,) = [op for op in inv.extra_ops if op.kind == "activation"]
    assert act.source == "0"
    full = inv.price(profile=eager).latency_ms
    pruned = inv.price(profile=eager, kept_channels={"0": (4, 8), "1": (8, 8)}).latency_ms
    assert pruned < full


def test_a_weight_norm_conv_never_prices_negative_weights() -> None:
    conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(4, 8, 3))
    inv = layer_inventory(nn.Sequential(conv), torch.zeros(1, 4, 10, 10))
    assert all(r.weight_params <= r.params for r in inv)


def test_a_network_on_another_device_is_traced_with_the_callers_cpu_input() -> None:
    """A trial trained on a GPU prices its compact network with the example input it made on
    the CPU (issue 16, found on an H200: every BAR trial failed 'Expected all tensors to be on
    the same device'); the meta device stands in for the GPU here."""
    from budgetsearch.cost.ops import index_op_elements, on_model_device

    class Gather(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.register_buffer("keep", torch.tensor([0, 2]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).index_select(1, self.keep)

    x = torch.zeros(1, 3, 8, 8)
    on_cpu = index_op_elements(Gather(), x)
    assert on_cpu and index_op_elements(Gather().to("meta"), x) == on_cpu
    assert on_model_device(Gather().to("meta"), x).device.type == "meta"
    assert on_model_device(nn.ReLU(), x) is x  # nothing held: the input stays where it is
    spread = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Linear(8, 2).to("meta"))
    assert on_model_device(spread, x) is x  # over two devices: where it enters is its own
