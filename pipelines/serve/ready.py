"""What every deployment of the inference graph answers the ingress's /readyz with."""


class Answers:
    """`ready()` for the ingress's /readyz: it answers once the replica has loaded its model (or its index)."""

    async def ready(self) -> bool:
        return True
