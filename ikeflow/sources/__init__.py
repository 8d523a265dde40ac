"""Where frames come from: capture files (pcap, pcapng, gzip, stdin; with the ESP fast path) and live
interfaces (packet ring or libpcap).  Each hands `Record`s, or raw frames, to the pipeline."""
