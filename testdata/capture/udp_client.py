"""Sends COUNT DNS-format queries for fparser.example, each from a new socket (a new
source port, so a new flow), and waits for each answer."""
import socket
import struct
import sys

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    q = struct.pack(">HHHHHH", 0x1000 + i, 0x0100, 1, 0, 0, 0)
    q += b"\x07fparser\x07example\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(q, (host, port))
    s.recvfrom(2048)
    s.close()
