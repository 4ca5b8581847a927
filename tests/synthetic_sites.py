"""Three generated hospitals, each printing its own layouts (the federated and leave-one-site-out tests)."""
from features.synthetic import LayoutMix

SITE_LAYOUTS = {"north": LayoutMix(), "south": LayoutMix(six_by_two=1.0),
                "east": LayoutMix(six_by_two=0.5, gridless=0.5)}
