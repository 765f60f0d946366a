"""Airdrops and transfers."""

from __future__ import annotations

from pykoii.errors import AirdropError, InsufficientFundsError, MalformedTransactionError
from pykoii.ledger import LedgerParams, LedgerState
from pykoii.ledger.accounts import koii

from .helpers import KOII, address, apply, assert_rejected, devnet

ALICE, BOB = address("alice"), address("bob")


def test_koii_formatting():
    assert koii(1_500_000_000) == "1.5 KOII (1500000000 ROE)"
    assert koii(0) == "0 KOII (0 ROE)"
    assert koii(7) == "0.000000007 KOII (7 ROE)"


def test_airdrop_mints_and_counts_supply():
    state = devnet()
    receipt = apply(state, "airdrop", BOB, 0, to=ALICE, amount=5 * KOII)
    assert state.balances == {ALICE: 5 * KOII} and state.total_supply == 5 * KOII
    assert receipt.events[0].kind == "Airdropped"


def test_airdrop_refused_off_devnet():
    assert_rejected(
        LedgerState(),
        AirdropError,
        "airdrop",
        ALICE,
        0,
        ("only by a devnet ledger", "--devnet"),
        to=ALICE,
        amount=1,
    )


def test_airdrop_over_limit():
    assert_rejected(
        devnet(),
        AirdropError,
        "airdrop",
        ALICE,
        0,
        ("1001 KOII (1001000000000 ROE) is over the limit", "at most 1000 KOII"),
        to=ALICE,
        amount=1001 * KOII,
    )


def test_airdrop_cooldown():
    state = LedgerState(params=LedgerParams(devnet=True, airdrop_cooldown_slots=10))
    apply(state, "airdrop", ALICE, 5, to=ALICE, amount=1)
    assert_rejected(
        state,
        AirdropError,
        "airdrop",
        ALICE,
        14,
        ("had an airdrop at slot 5", "accepted from slot 15 (now 14)"),
        to=ALICE,
        amount=1,
    )
    apply(state, "airdrop", ALICE, 15, to=ALICE, amount=1)


def test_airdrop_amount_must_be_positive():
    assert_rejected(
        devnet(),
        MalformedTransactionError,
        "airdrop",
        ALICE,
        0,
        ("airdrop amount must be a positive integer number of ROE, got 0",),
        to=ALICE,
        amount=0,
    )


def test_transfer_moves_roe():
    state = devnet()
    apply(state, "airdrop", ALICE, 0, to=ALICE, amount=10)
    apply(state, "transfer", ALICE, 1, to=BOB, amount=4)
    assert state.balances == {ALICE: 6, BOB: 4}
    apply(state, "transfer", ALICE, 1, to=BOB, amount=6)
    assert ALICE not in state.balances  # empty wallets disappear from the state


def test_transfer_over_balance():
    state = devnet()
    apply(state, "airdrop", ALICE, 0, to=ALICE, amount=10)
    assert_rejected(
        state,
        InsufficientFundsError,
        "transfer",
        ALICE,
        1,
        (f"account {ALICE} holds 0.00000001 KOII (10 ROE)", "0.000000011 KOII (11 ROE) is needed"),
        to=BOB,
        amount=11,
    )


def test_transfer_amount_must_be_positive():
    assert_rejected(
        devnet(),
        MalformedTransactionError,
        "transfer",
        ALICE,
        0,
        ("transfer amount must be a positive integer number of ROE, got -1",),
        to=BOB,
        amount=-1,
    )
