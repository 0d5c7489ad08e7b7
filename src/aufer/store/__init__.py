"""The face store: aligned crops, landmarks and records of a dataset in one SQLite file, written once by
``aufer prepare`` (:mod:`aufer.store.prepare`) and read by the torch datasets."""

from aufer.store.facestore import FaceStore, StoredFrame, StoreError

__all__ = ["FaceStore", "StoredFrame", "StoreError"]
