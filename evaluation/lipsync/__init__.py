"""SyncNet preprocessing: 25 fps resampling, face tracks and crops, in memory."""
