"""Hello-World, faulty on purpose: does the work but submits "Goodbye, World!".

Run it on one node of a devnet (or with ``pykoii simulate``) to watch the others catch it: its proof
gets false votes, its submission is judged invalid and 70 % of its stake is slashed at payout. Its
audit is honest, so it still votes against other wrong proofs.
"""

from pykoii.sdk import RoundContext, Task


class HelloWorldFaulty(Task):
    def task(self, ctx: RoundContext) -> None:
        ctx.store.set("value", "Hello, World!")

    def submission(self, ctx: RoundContext) -> str:
        return "Goodbye, World!"

    def audit(self, ctx: RoundContext, submission: str, submitter: str) -> bool:
        return submission == "Hello, World!"
