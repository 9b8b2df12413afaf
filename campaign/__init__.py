"""campaign: patient-education email sequences for anxiety leads (library package)."""

__version__ = "0.1.0"
