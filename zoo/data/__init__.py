"""LightningDataModules, datasets and transforms, one file per task."""
from .classification import DigitsDataModule, ImageFolderDataModule, load_digits_images
from .corrupt import CorruptFileError, CorruptFileWarning, CorruptItems, SkipCollate
from .detection import (
    INSECT_CLASSES,
    COCODetection,
    DetectionDataModule,
    DetectionDataset,
    DetectionImages,
    DetectionTransforms,
    Letterbox,
    VOCDetection,
    YOLODetection,
    detection_collate,
    detection_dataset,
    eval_transforms,
    kmeans_anchors,
    mosaic4,
    read_coco_json,
    read_voc_xml,
    read_yolo_txt,
    to_original,
    train_transforms,
    write_coco,
    write_yolo_txt,
)
from .images import IMAGE_SUFFIXES, open_image, read_image
from .steganalysis import (
    StegoDataModule,
    StegoPairs,
    default_covers,
    embed_covers,
    embed_image,
    pair_collate,
    read_pixels,
)
from .synthetic_insects import synthetic_insects
from .video import (
    VideoClips,
    VideoDataModule,
    VideoEntry,
    VideoInfo,
    drop_failed_collate,
    face_box,
    load_clip,
    probe_video,
    read_frames,
    read_metadata,
    sample_indices,
    split_entries,
    write_mp4,
)

__all__ = [
    "CorruptFileError",
    "CorruptFileWarning",
    "CorruptItems",
    "SkipCollate",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "load_digits_images",
    "IMAGE_SUFFIXES",
    "open_image",
    "read_image",
    "INSECT_CLASSES",
    "COCODetection",
    "DetectionDataModule",
    "DetectionDataset",
    "DetectionImages",
    "DetectionTransforms",
    "Letterbox",
    "VOCDetection",
    "YOLODetection",
    "detection_collate",
    "detection_dataset",
    "eval_transforms",
    "kmeans_anchors",
    "mosaic4",
    "read_coco_json",
    "read_voc_xml",
    "read_yolo_txt",
    "write_coco",
    "write_yolo_txt",
    "StegoDataModule",
    "StegoPairs",
    "default_covers",
    "embed_covers",
    "embed_image",
    "pair_collate",
    "read_pixels",
    "synthetic_deepfakes",
    "synthetic_insects",
    "to_original",
    "train_transforms",
    "VideoClips",
    "VideoDataModule",
    "VideoEntry",
    "VideoInfo",
    "drop_failed_collate",
    "face_box",
    "load_clip",
    "probe_video",
    "read_frames",
    "read_metadata",
    "sample_indices",
    "split_entries",
    "write_mp4",
]


def __getattr__(name: str):
    # the video default draws with OpenCV (the `video` extra): imported on first use, so that
    # `import zoo.data` works without it
    if name == "synthetic_deepfakes":
        from .synthetic_faces import synthetic_deepfakes

        return synthetic_deepfakes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
