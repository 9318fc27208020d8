"""Primitives every package shares, Kedro-free and light: atomic files and digests (:mod:`files`),
the feature table (:mod:`features`), where torch computes (:mod:`compute`) and the offline
defaults applied on import of the package (:mod:`offline`)."""
