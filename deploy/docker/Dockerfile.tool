# HAProxy and Prometheus for docker-compose.yml, made the same way as the
# hpfriends image: FROM scratch plus the Debian binary and its libraries,
# copied by build-images. The compose file gives the command.
FROM scratch
ARG ROOT
COPY ${ROOT}/ /
