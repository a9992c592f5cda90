"""Search strategies of nni-lightnas: the LightNAS one-shot strategy and the BTE evolution tuner."""

__all__: list[str] = []
