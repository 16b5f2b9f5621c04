"""Pictures the commands draw (attention maps, CTC posteriors): matplotlib without a display,
imported only when a picture is asked for, and PNG files written atomically."""

from __future__ import annotations

from typing import Any

from .atomic import atomic_write
from .errors import UserError


def pyplot(flag: str) -> Any:
    """``matplotlib.pyplot`` on the Agg backend; ``flag`` names the option that needs it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"{flag} needs matplotlib: pip install -e '.[plot]'") from None
    return plt


def save_png(fig: Any, path: str) -> None:
    """Write ``fig`` to ``path`` as a PNG (never half a file) and free it."""
    import matplotlib.pyplot as plt
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
