"""The Y-decoder and selective decoding.

    train_decoder  `vljepa train-decoder` (config: its settings; loop: its Ray Train worker loop)
    caption        `vljepa caption`, and loading what captioning needs
    stream         `vljepa stream`: selective decoding of a long video
    live           `vljepa live` (live_client: a client of the live endpoint)
"""
