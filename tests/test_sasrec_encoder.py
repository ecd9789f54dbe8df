"""SASRec encoder: padding is never attended, empty histories, heads, masks."""

import pytest
import torch
from recrl.models.sasrec import QHead, SASRecConfig, SASRecEncoder
from torch import nn

N_ITEMS, L = 30, 10


def make_encoder(**overrides) -> SASRecEncoder:
    torch.manual_seed(0)
    encoder = SASRecEncoder(N_ITEMS, SASRecConfig(hidden_size=16, max_len=L, **overrides))
    return encoder.eval()


def left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    state = torch.full((len(rows), L), N_ITEMS, dtype=torch.int32)
    for b, items in enumerate(rows):
        if items:
            state[b, L - len(items) :] = torch.tensor(items, dtype=torch.int32)
    return state, torch.tensor([len(r) for r in rows], dtype=torch.int32)


ROWS = [[3, 1, 4], [1, 5, 9, 2, 6, 5, 3, 5, 8, 9], [7], []]


def test_config_rejects_heads_that_do_not_divide_hidden():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        SASRecConfig(hidden_size=64, num_heads=3)


@pytest.mark.parametrize("num_heads,num_blocks", [(1, 1), (2, 2), (4, 1)])
def test_padding_is_never_attended(num_heads, num_blocks):
    encoder = make_encoder(num_heads=num_heads, num_blocks=num_blocks)
    state, state_len = left_padded(ROWS)
    expected = encoder.encode(state, state_len)
    expected_seq = encoder.encode_sequence(state, state_len)

    # Real item ids in every padded slot: nothing may change.
    garbage = torch.randint(0, N_ITEMS, state.shape, dtype=torch.int32)
    real = encoder.real_positions(state_len)
    noisy = torch.where(real, state, garbage)
    assert not torch.equal(noisy, state)
    torch.testing.assert_close(encoder.encode(noisy, state_len), expected, rtol=0, atol=0)
    torch.testing.assert_close(
        encoder.encode_sequence(noisy, state_len)[real], expected_seq[real], rtol=0, atol=0
    )

    # A non-zero pad row must not matter either.
    with torch.no_grad():
        encoder.item_embedding.weight[encoder.pad_id].normal_()
    torch.testing.assert_close(encoder.encode(state, state_len), expected, rtol=0, atol=0)


def test_attention_is_causal():
    encoder = make_encoder(num_blocks=2)
    state, state_len = left_padded([[3, 1, 4, 1]])
    changed = state.clone()
    changed[0, -1] = 7  # the most recent item
    before = encoder.encode_sequence(state, state_len)
    after = encoder.encode_sequence(changed, state_len)
    torch.testing.assert_close(after[:, :-1], before[:, :-1], rtol=0, atol=0)
    assert not torch.allclose(after[:, -1], before[:, -1])


def test_empty_history_returns_the_learned_empty_vector_without_nan():
    encoder = make_encoder(num_blocks=2).train()  # dropout on: still no NaN
    with torch.no_grad():
        encoder.empty_state.normal_()
    state, state_len = left_padded(ROWS)
    s = encoder.encode(state, state_len)
    assert torch.isfinite(s).all()
    torch.testing.assert_close(s[3], encoder.empty_state.detach(), rtol=0, atol=0)
    assert torch.isfinite(encoder.encode_sequence(state, state_len)).all()

    s.sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert encoder.empty_state.grad.abs().sum() > 0


def test_pad_row_is_zero_and_gets_no_gradient():
    encoder = make_encoder().train()
    assert encoder.item_embedding.weight[encoder.pad_id].abs().sum() == 0
    state, state_len = left_padded(ROWS)
    encoder.supervised_logits(encoder.encode(state, state_len)).logsumexp(1).sum().backward()
    grad = encoder.item_embedding.weight.grad
    assert grad[encoder.pad_id].abs().sum() == 0
    assert grad[3].abs().sum() > 0


def test_attention_matches_torch_multihead_attention():
    """Our fused-qkv SDPA block computes real multi-head attention with the boolean mask."""
    encoder = make_encoder(num_heads=4)
    ours = encoder.blocks[0].attn
    reference = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.qkv.weight)
        reference.in_proj_bias.copy_(ours.qkv.bias)
        reference.out_proj.weight.copy_(ours.out.weight)
        reference.out_proj.bias.copy_(ours.out.bias)
    _, state_len = left_padded(ROWS[:3])
    allowed = encoder.attention_mask(encoder.real_positions(state_len))  # [B, 1, L, L]
    x = torch.randn(3, L, 16)
    blocked = (~allowed).repeat_interleave(4, dim=0).squeeze(1)  # [B * heads, L, L]
    expected, _ = reference(x, x, x, attn_mask=blocked, need_weights=False)
    torch.testing.assert_close(ours(x, allowed), expected, rtol=1e-5, atol=1e-5)


def test_heads_shapes_and_tied_head_uses_item_table_without_pad():
    state, state_len = left_padded(ROWS)
    untied = make_encoder()
    s = untied.encode(state, state_len)
    assert s.shape == (4, 16)
    assert untied.supervised_logits(s).shape == (4, N_ITEMS)
    assert untied.score_all(state, state_len).shape == (4, N_ITEMS)
    assert QHead(16, N_ITEMS)(s).shape == (4, N_ITEMS)

    tied = make_encoder(tie_supervised_head=True)
    s = tied.encode(state, state_len)
    expected = s @ tied.item_embedding.weight[:N_ITEMS].T + tied.supervised_bias
    torch.testing.assert_close(tied.supervised_logits(s), expected)


def test_mask_token_has_its_own_embedding():
    encoder = make_encoder()
    state, state_len = left_padded([[3, 1, 4]])
    masked = state.clone()
    masked[0, -2] = encoder.mask_id
    assert not torch.allclose(encoder.encode(masked, state_len), encoder.encode(state, state_len))


def test_wrong_sequence_length_is_reported():
    encoder = make_encoder()
    with pytest.raises(ValueError, match="max_len"):
        encoder.encode(torch.zeros(2, L + 1, dtype=torch.long), torch.ones(2, dtype=torch.long))


def _explicit_attention(attn, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The attention written out: softmax(QKᵀ/√d + mask)·V, the mask a large negative
    constant on blocked entries (as SASRec's reference code does), per head."""
    batch, length, hidden = x.shape
    heads = attn.num_heads
    q, k, v = attn.qkv(x).view(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    scores = q @ k.transpose(-1, -2) / (hidden // heads) ** 0.5  # [B, heads, L, L]
    scores = scores.masked_fill(~allowed, -(2.0**32))
    y = scores.softmax(dim=-1) @ v
    return attn.out(y.transpose(1, 2).reshape(batch, length, hidden))


@pytest.mark.parametrize("num_heads,num_blocks", [(1, 1), (4, 2)])
def test_sdpa_encoder_equals_explicit_attention_with_padding_and_empty_history(
    num_heads, num_blocks, monkeypatch
):
    """The encoder through `scaled_dot_product_attention` gives the state vectors the
    explicit masked softmax gives, for full, partial, one-item and empty histories."""
    from recrl.models.sasrec import encoder as encoder_module

    encoder = make_encoder(num_heads=num_heads, num_blocks=num_blocks)
    state, state_len = left_padded(ROWS)
    with torch.no_grad():
        sdpa = encoder.encode(state, state_len)
        sdpa_sequence = encoder.encode_sequence(state, state_len)
        monkeypatch.setattr(encoder_module.MultiHeadSelfAttention, "forward", _explicit_attention)
        explicit = encoder.encode(state, state_len)
        explicit_sequence = encoder.encode_sequence(state, state_len)
    torch.testing.assert_close(sdpa, explicit, rtol=1e-5, atol=1e-6)
    real = encoder.real_positions(state_len)
    torch.testing.assert_close(sdpa_sequence[real], explicit_sequence[real], rtol=1e-5, atol=1e-6)
    # The fully padded row (empty history) is the learned empty vector on both paths.
    assert torch.equal(sdpa[3], encoder.empty_state) and torch.equal(explicit[3], sdpa[3])
    assert torch.isfinite(sdpa_sequence).all() and torch.isfinite(explicit_sequence).all()


def test_bf16_autocast_encoder_stays_close_to_float32():
    encoder = make_encoder(num_heads=2)
    state, state_len = left_padded(ROWS)
    with torch.no_grad():
        full = encoder.score_all(state, state_len)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = encoder.score_all(state, state_len)
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    # bf16 keeps 8 bits of mantissa: scores of order 1 agree to a few hundredths.
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)
