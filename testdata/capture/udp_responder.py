"""A DNS-like UDP responder: answers each datagram with the query echoed back and a
fixed A record appended, as a DNS server would lengthen its reply."""
import socket
import sys

port = int(sys.argv[1])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
answer = bytes.fromhex("c00c000100010000003c0004c0000202")
while True:
    data, addr = s.recvfrom(2048)
    if len(data) < 12:
        continue
    reply = bytearray(data)
    reply[2] |= 0x80  # QR: a response
    reply[7] = 1  # one answer
    s.sendto(bytes(reply) + answer, addr)
