# frozen_string_literal: true

require "spec_helper"

# The C gem's per-line limit: one header line over 8 KiB is refused with 431, even when the
# whole head is well under the 32 KiB head limit. Shorter lines pass.
RSpec.describe "a header line over 8 KiB gets 431" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("answers_ok.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def get_with_header(value)
    raw_request(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: #{value}\r\nConnection: close\r\n\r\n", timeout: 5)
  end

  it "answers 431 to an X-Big header of 9,000 bytes (head under 32 KiB)" do
    reply = get_with_header("x" * 9000)
    expect(reply).to start_with("HTTP/1.1 431")
  end

  it "answers 200 to an X-Big header of 7,000 bytes" do
    reply = get_with_header("x" * 7000)
    expect(reply).to start_with("HTTP/1.1 200")
  end

  it "keeps serving afterwards" do
    expect_serving(@server)
  end
end
