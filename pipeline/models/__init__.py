"""Everything that travels with a trained model: weights formats and loading, model cards, exports and packages."""

from pipeline.models.card import (
    ModelCard,
    ModelCardError,
    card_path,
    card_setting,
    check_card,
    network_name,
    read_model_card,
)
from pipeline.models.weights import (
    FORMATS,
    ExportedNetwork,
    expand_checkpoints,
    load_ensemble,
    load_state_dict_file,
    weights_names,
)

__all__ = [
    "FORMATS",
    "ExportedNetwork",
    "ModelCard",
    "ModelCardError",
    "card_path",
    "card_setting",
    "check_card",
    "expand_checkpoints",
    "load_ensemble",
    "load_state_dict_file",
    "network_name",
    "read_model_card",
    "weights_names",
]
