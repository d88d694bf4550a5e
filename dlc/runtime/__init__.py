"""The training runtime: the loop, data, augmentation, checkpoints, run folders, cross-validation, tuning,
serving and the catalogue page. It talks to a backend only through the Session protocol."""
