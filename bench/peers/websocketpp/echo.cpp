// Echo server on WebSocket++ over standalone asio, started by
// `tern compare` as `echo PORT`. Listens on 127.0.0.1:PORT, prints one
// "listening on ws://..." line and echoes every message with its opcode
// (text as text, binary as binary) on one thread until it is killed.

#define ASIO_STANDALONE

#include <cstdio>
#include <cstdlib>
#include <string>

#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/logger/stub.hpp>
#include <websocketpp/server.hpp>

// The library's default configuration, with logging compiled out and the
// message limit raised from 32 MB to the 256 MiB every server in the
// comparison gets.
struct echo_config : websocketpp::config::asio {
    typedef websocketpp::log::stub elog_type;
    typedef websocketpp::log::stub alog_type;

    struct transport_config : websocketpp::config::asio::transport_config {
        typedef websocketpp::log::stub elog_type;
        typedef websocketpp::log::stub alog_type;
    };
    typedef websocketpp::transport::asio::endpoint<transport_config> transport_type;

    static const size_t max_message_size = 256 * 1024 * 1024;
};

typedef websocketpp::server<echo_config> server;

int main(int argc, char **argv) {
    char *end = nullptr;
    long port = argc == 2 ? std::strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || *end != '\0' || port < 0 || port > 65535) {
        std::fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }

    server s;
    try {
        s.init_asio();
        s.set_reuse_addr(true);
        s.set_listen_backlog(65535);
        s.set_max_message_size(echo_config::max_message_size);
        // Once the TCP connection is set up (the socket is open by then),
        // turn Nagle's algorithm off as every other server here does.
        s.set_tcp_post_init_handler([&s](websocketpp::connection_hdl hdl) {
            websocketpp::lib::error_code ec;
            server::connection_ptr con = s.get_con_from_hdl(hdl, ec);
            if (ec) {
                return;
            }
            asio::error_code ignored;
            con->get_socket().set_option(asio::ip::tcp::no_delay(true), ignored);
        });
        s.set_message_handler([&s](websocketpp::connection_hdl hdl, server::message_ptr message) {
            websocketpp::lib::error_code ec;
            s.send(hdl, message->get_payload(), message->get_opcode(), ec);
            // A connection that went away while its echo was on the way
            // has nothing left to answer.
            (void)ec;
        });

        asio::ip::tcp::endpoint at(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
        s.listen(at);
        s.start_accept();
        websocketpp::lib::error_code ec;
        auto bound = s.get_local_endpoint(ec);
        std::printf("listening on ws://127.0.0.1:%u\n", ec ? static_cast<unsigned>(port) : bound.port());
        std::fflush(stdout);
        s.run();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "echo: %s\n", e.what());
        return 1;
    }
    return 0;
}
