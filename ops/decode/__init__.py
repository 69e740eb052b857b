"""Where and what to decode from a stream of Ŝ_Y (Ray-free; paper §2, §4.5).

    stream_windows      a long video -> sliding windows of sampled frames
    live_windows        a live feed of frames -> the same windows, as they complete
    segmentation        where meaning changes: Ward segments, uniform, the online rule
    selective_decoding  windows -> Ŝ_Y per window -> segments -> one decode each
"""
