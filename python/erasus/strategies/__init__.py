"""Unlearning strategies, written once against the task adapters (:mod:`erasus.tasks`).

``erasus.get_strategy(name, **options).unlearn(model=..., forget_loader=..., retain_loader=...)``; importing
this package registers every built-in method.
"""

from . import (  # noqa: F401  (registration side effects)
    amnesiac,
    bad_teacher,
    boundary_shrink,
    certified_newton,
    certified_removal,
    diffusion,
    dp_finetune,
    finetune,
    fisher_forgetting,
    grad_diff,
    gradient_ascent,
    l1_sparse,
    llm,
    neg_grad_plus,
    neuron_pruning,
    random_label,
    retrain,
    salun,
    scrub,
    sisa,
    ssd,
    unsir,
    vlm,
)
from .amnesiac import Amnesiac, AmnesiacRecorder
from .bad_teacher import BadTeacher
from .base import Run, UnlearningStrategy
from .boundary_shrink import BoundaryShrink
from .certified_newton import CertifiedNewton
from .certified_removal import CertifiedRemoval
from .diffusion.concept_ablation import ConceptAblation
from .diffusion.esd import ESD
from .diffusion.salun import SalUnDiffusion
from .diffusion.uce import UCE
from .diffusion.unet_surgery import UNetSurgery
from .dp_finetune import DPFinetune
from .finetune import Finetune
from .fisher_forgetting import FisherForgetting
from .grad_diff import GradDiff
from .gradient_ascent import GradientAscent
from .l1_sparse import L1Sparse
from .llm.causal_tracing import CausalTracing
from .llm.dpo import DPO, IdkDPO
from .llm.embedding_alignment import EmbeddingAlignment
from .llm.forget_token_npo import ForgetTokenNPO
from .llm.npo import NPO
from .llm.rmu import RMU
from .llm.simnpo import SimNPO
from .llm.undial import UNDIAL
from .neg_grad_plus import NegGradPlus
from .neuron_pruning import MaskBased, NeuronPruning
from .random_label import RandomLabel
from .retrain import Retrain
from .salun import SalUn
from .scrub import Scrub
from .sisa import SISA
from .ssd import LFSSD, SSD
from .unsir import Unsir
from .vlm.clip_erase import CLIPEraseStrategy
from .vlm.concept_projection import ConceptProjectionStrategy
from .vlm.contrastive_unlearning import ContrastiveUnlearningStrategy
from .vlm.modality_decoupling import ModalityDecouplingStrategy
from .vlm.zero_shot_class import ZeroShotClassUnlearning

# The seed specification's class names. NegativeGradientStrategy is its plain negative-gradient baseline
# (gradient ascent on the forget set, no retain term), i.e. erasus' gradient_ascent.
AmnesiacUnlearningStrategy = Amnesiac
BadTeacherStrategy = BadTeacher
BoundaryShrinkStrategy = BoundaryShrink
CausalTracingStrategy = CausalTracing
CertifiedNewtonStrategy = CertifiedNewton
CertifiedRemovalStrategy = CertifiedRemoval
DPFinetuneStrategy = DPFinetune
DPOStrategy = DPO
EmbeddingAlignmentStrategy = EmbeddingAlignment
FinetuneStrategy = Finetune
ForgetTokenNPOStrategy = ForgetTokenNPO
FisherForgettingStrategy = FisherForgetting
GradDiffStrategy = GradDiff
GradientAscentStrategy = GradientAscent
IdkDPOStrategy = IdkDPO
L1SparseStrategy = L1Sparse
LFSSDStrategy = LFSSD
MaskBasedUnlearningStrategy = MaskBased
NPOStrategy = NPO
NegGradPlusStrategy = NegGradPlus
NegativeGradientStrategy = GradientAscent
NeuronPruningStrategy = NeuronPruning
RMUStrategy = RMU
RandomLabelStrategy = RandomLabel
RetrainStrategy = Retrain
SCRUBStrategy = Scrub
SISAStrategy = SISA
SalUnStrategy = SalUn
SelectiveSynapticDampeningStrategy = SSD
SimNPOStrategy = SimNPO
UNDIALStrategy = UNDIAL
UNSIRStrategy = Unsir

__all__ = [
    "Amnesiac",
    "AmnesiacRecorder",
    "AmnesiacUnlearningStrategy",
    "BadTeacher",
    "BadTeacherStrategy",
    "BoundaryShrink",
    "BoundaryShrinkStrategy",
    "CausalTracing",
    "CausalTracingStrategy",
    "CertifiedNewton",
    "CertifiedNewtonStrategy",
    "CertifiedRemoval",
    "CertifiedRemovalStrategy",
    "ConceptAblation",
    "DPFinetune",
    "ESD",
    "DPFinetuneStrategy",
    "DPO",
    "DPOStrategy",
    "EmbeddingAlignment",
    "EmbeddingAlignmentStrategy",
    "Finetune",
    "FinetuneStrategy",
    "FisherForgetting",
    "FisherForgettingStrategy",
    "ForgetTokenNPO",
    "ForgetTokenNPOStrategy",
    "GradDiff",
    "GradDiffStrategy",
    "GradientAscent",
    "GradientAscentStrategy",
    "IdkDPO",
    "IdkDPOStrategy",
    "L1Sparse",
    "L1SparseStrategy",
    "LFSSD",
    "LFSSDStrategy",
    "MaskBased",
    "MaskBasedUnlearningStrategy",
    "CLIPEraseStrategy",
    "ConceptProjectionStrategy",
    "ContrastiveUnlearningStrategy",
    "ModalityDecouplingStrategy",
    "NPO",
    "NPOStrategy",
    "NegGradPlus",
    "NegGradPlusStrategy",
    "NegativeGradientStrategy",
    "NeuronPruning",
    "NeuronPruningStrategy",
    "RMU",
    "RMUStrategy",
    "RandomLabel",
    "RandomLabelStrategy",
    "Retrain",
    "RetrainStrategy",
    "Run",
    "SCRUBStrategy",
    "SISA",
    "SISAStrategy",
    "SSD",
    "SalUn",
    "SalUnDiffusion",
    "SalUnStrategy",
    "Scrub",
    "SelectiveSynapticDampeningStrategy",
    "SimNPO",
    "SimNPOStrategy",
    "UNDIAL",
    "UNDIALStrategy",
    "UCE",
    "UNSIRStrategy",
    "UNetSurgery",
    "UnlearningStrategy",
    "Unsir",
    "ZeroShotClassUnlearning",
]
