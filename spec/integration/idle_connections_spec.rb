# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# Many idle WebSocket connections: 10,000 raw clients (spec/support/ws_frames.rb) upgraded
# to spec/support/apps/ws_echo.ru and left idle, while the server must go on answering HTTP
# and new WebSocket clients; then they all leave and every on_close runs. The process
# hard limit on open files is 20,000 here, so this process raises its soft limit to it and
# stays under it. Bounded: about two minutes at most.
RSpec.describe "10,000 idle WebSocket connections" do
  include RealtimeHelpers

  around do |example|
    soft, hard = Process.getrlimit(:NOFILE)
    Process.setrlimit(:NOFILE, hard, hard) if soft < hard
    example.run
  ensure
    Process.setrlimit(:NOFILE, soft, hard) if soft
  end

  # Adds `count` upgraded clients to `clients`, `batch` handshakes in flight at a time, by
  # `deadline`.
  def open_idle(clients, port, count:, batch:, deadline:)
    while clients.size < count
      raise "only #{clients.size} connections upgraded in time" if WsFrames.now > deadline

      first = clients.size
      [batch, count - first].min.times { clients << WsFrames::Client.new(port, "/", wait: false) }
      fresh = clients[first..]
      fresh.each { |ws| ws.read_head([deadline - WsFrames.now, 0.1].max) }
      refused = fresh.reject(&:upgraded?)
      raise "#{refused.size} handshakes failed, e.g. #{refused.first.head.inspect}" unless refused.empty?
    end
  end

  it "holds them, still answers HTTP and new clients, and runs every on_close once they leave" do
    count = 10_000
    _, hard = Process.getrlimit(:NOFILE)
    expect(hard).to be > count + 500
    server = ServerProcess.new(["-t", "2", app_path("ws_echo.ru")])
    clients = []
    open_idle(clients, server.port, count: count, batch: 100, deadline: WsFrames.now + 60)
    expect(eventually(20) { http_get(server.port, "/count").body == count.to_s }).to be(true),
                                                                               http_get(server.port, "/count").body
    started = WsFrames.now
    expect(http_get(server.port, "/").body).to eq("ok")
    expect(WsFrames.now - started).to be < 2

    result = ws_client(url: ws_url(server.port, "/"), steps: [{ send: "newcomer" }, { recv: 1 }])
    expect(result["received"]).to eq([%w[text newcomer]])
    clients.sample(20, random: Random.new(1)).each_with_index do |ws, i|
      ws.text("idle #{i}")
      expect(ws.read_message(5)).to eq([:text, "idle #{i}"])
    end

    clients.each(&:close_socket)
    clients = []
    expect(eventually(30) { http_get(server.port, "/count").body == "0" }).to be(true), http_get(server.port, "/count").body
    expect_serving(server)
    expect(server.stop&.exitstatus).to eq(0)
  ensure
    clients&.each(&:close_socket)
    server&.stop
  end
end
