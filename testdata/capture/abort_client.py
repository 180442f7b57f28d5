"""Opens a TCP connection, sends half a request, and aborts it: SO_LINGER with a zero
timeout makes close() send a RST instead of a FIN."""
import socket
import struct
import sys
import time

s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /index.html HTTP/1.0\r\n")
time.sleep(0.2)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
